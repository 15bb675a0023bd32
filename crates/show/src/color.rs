//! Colour-blind-safe palettes: Okabe–Ito categories, a blue–white–red diverging map and viridis.

/// An sRGB colour with 8 bits per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// Black.
    pub const BLACK: Rgb = Rgb(0, 0, 0);
    /// White.
    pub const WHITE: Rgb = Rgb(255, 255, 255);

    /// `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Parses `#rrggbb` (as written into the SVG).
    pub fn from_hex(s: &str) -> Option<Rgb> {
        let h = s.strip_prefix('#')?;
        if h.len() != 6 || !h.is_ascii() {
            return None;
        }
        let p = |i: usize| h.get(i..i + 2).and_then(|x| u8::from_str_radix(x, 16).ok());
        Some(Rgb(p(0)?, p(2)?, p(4)?))
    }

    /// WCAG relative luminance in 0..=1.
    pub fn luminance(self) -> f64 {
        fn lin(c: u8) -> f64 {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        }
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }

    /// Black or white, whichever reads better on this colour.
    pub fn contrast_text(self) -> Rgb {
        if self.luminance() > 0.32 {
            Rgb::BLACK
        } else {
            Rgb::WHITE
        }
    }

    fn lerp(a: [f64; 3], b: [f64; 3], t: f64) -> Rgb {
        let c = |i: usize| {
            let v = a[i] + (b[i] - a[i]) * t;
            (v * 255.0).round().clamp(0.0, 255.0) as u8
        };
        Rgb(c(0), c(1), c(2))
    }
}

/// Okabe & Ito (2008) colours, in the order used for categories: blue, vermillion, bluish green,
/// orange, reddish purple, sky blue, yellow, black.
pub const OKABE_ITO: [Rgb; 8] = [
    Rgb(0x00, 0x72, 0xB2),
    Rgb(0xD5, 0x5E, 0x00),
    Rgb(0x00, 0x9E, 0x73),
    Rgb(0xE6, 0x9F, 0x00),
    Rgb(0xCC, 0x79, 0xA7),
    Rgb(0x56, 0xB4, 0xE9),
    Rgb(0xF0, 0xE4, 0x42),
    Rgb(0x00, 0x00, 0x00),
];

/// Colour of category `i` (cycles through [`OKABE_ITO`]); category 0 is blue ("normal"),
/// category 1 vermillion ("robust").
pub fn category(i: usize) -> Rgb {
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// Colour for missing values (NaN).
pub const MISSING: Rgb = Rgb(0xBD, 0xBD, 0xBD);

/// ColorBrewer RdBu anchors from −1 (dark blue) to +1 (dark red) with a pure white centre.
const DIVERGING: [[u8; 3]; 11] = [
    [0x05, 0x30, 0x61],
    [0x21, 0x66, 0xAC],
    [0x43, 0x93, 0xC3],
    [0x92, 0xC5, 0xDE],
    [0xD1, 0xE5, 0xF0],
    [0xFF, 0xFF, 0xFF],
    [0xFD, 0xDB, 0xC7],
    [0xF4, 0xA5, 0x82],
    [0xD6, 0x60, 0x4D],
    [0xB2, 0x18, 0x2B],
    [0x67, 0x00, 0x1F],
];

/// Diverging blue–white–red map: `t` = −1 → darkest blue `#053061`, 0 → white, +1 → darkest red
/// `#67001f`; clamped to ±1; NaN → [`MISSING`].
pub fn diverging(t: f64) -> Rgb {
    if t.is_nan() {
        return MISSING;
    }
    let u = (t.clamp(-1.0, 1.0) + 1.0) * 5.0; // 0..=10
    let i = (u.floor() as usize).min(9);
    let f = u - i as f64;
    let a = DIVERGING[i].map(|v| f64::from(v) / 255.0);
    let b = DIVERGING[i + 1].map(|v| f64::from(v) / 255.0);
    Rgb::lerp(a, b, f)
}

/// Every 8th entry (and the last) of matplotlib's 256-entry viridis table (CC0).
const VIRIDIS: [(u8, [f64; 3]); 33] = [
    (0, [0.267004, 0.004874, 0.329415]),
    (8, [0.277018, 0.050344, 0.375715]),
    (16, [0.282327, 0.094955, 0.417331]),
    (24, [0.282884, 0.135920, 0.453427]),
    (32, [0.278826, 0.175490, 0.483397]),
    (40, [0.270595, 0.214069, 0.507052]),
    (48, [0.258965, 0.251537, 0.524736]),
    (56, [0.244972, 0.287675, 0.537260]),
    (64, [0.229739, 0.322361, 0.545706]),
    (72, [0.214298, 0.355619, 0.551184]),
    (80, [0.199430, 0.387607, 0.554642]),
    (88, [0.185556, 0.418570, 0.556753]),
    (96, [0.172719, 0.448791, 0.557885]),
    (104, [0.160665, 0.478540, 0.558115]),
    (112, [0.149039, 0.508051, 0.557250]),
    (120, [0.137770, 0.537492, 0.554906]),
    (128, [0.127568, 0.566949, 0.550556]),
    (136, [0.120565, 0.596422, 0.543611]),
    (144, [0.120638, 0.625828, 0.533488]),
    (152, [0.132268, 0.655014, 0.519661]),
    (160, [0.157851, 0.683765, 0.501686]),
    (168, [0.196571, 0.711827, 0.479221]),
    (176, [0.246070, 0.738910, 0.452024]),
    (184, [0.304148, 0.764704, 0.419943]),
    (192, [0.369214, 0.788888, 0.382914]),
    (200, [0.440137, 0.811138, 0.340967]),
    (208, [0.515992, 0.831158, 0.294279]),
    (216, [0.595839, 0.848717, 0.243329]),
    (224, [0.678489, 0.863742, 0.189503]),
    (232, [0.762373, 0.876424, 0.137064]),
    (240, [0.845561, 0.887322, 0.099702]),
    (248, [0.926106, 0.897330, 0.104071]),
    (255, [0.993248, 0.906157, 0.143936]),
];

/// Viridis (perceptually uniform, colour-blind safe): `t` = 0 → dark purple, 1 → yellow; clamped;
/// NaN → [`MISSING`].
pub fn viridis(t: f64) -> Rgb {
    if t.is_nan() {
        return MISSING;
    }
    let x = t.clamp(0.0, 1.0) * 255.0;
    let mut k = 0;
    while k + 2 < VIRIDIS.len() && f64::from(VIRIDIS[k + 1].0) < x {
        k += 1;
    }
    let (i0, a) = VIRIDIS[k];
    let (i1, b) = VIRIDIS[k + 1];
    let f = ((x - f64::from(i0)) / f64::from(i1 - i0)).clamp(0.0, 1.0);
    Rgb::lerp(a, b, f)
}

/// Colour stops (offset, colour) approximating `map` over 0..=1 for SVG gradients.
pub(crate) fn stops(map: &dyn Fn(f64) -> Rgb, n: usize) -> Vec<(f64, Rgb)> {
    let n = n.max(2);
    (0..n)
        .map(|i| {
            let t = i as f64 / (n - 1) as f64;
            (t, map(t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_ends_and_centre() {
        assert_eq!(diverging(1.0), Rgb(0x67, 0x00, 0x1F));
        assert_eq!(diverging(-1.0), Rgb(0x05, 0x30, 0x61));
        assert_eq!(diverging(0.0), Rgb::WHITE);
        assert_eq!(diverging(7.0), diverging(1.0));
        assert_eq!(diverging(f64::NAN), MISSING);
    }

    #[test]
    fn viridis_matches_matplotlib() {
        // matplotlib viridis(0), viridis(1.0) and entry 128 (0.127568, 0.566949, 0.550556).
        assert_eq!(viridis(0.0), Rgb(68, 1, 84));
        assert_eq!(viridis(1.0), Rgb(253, 231, 37));
        assert_eq!(viridis(128.0 / 255.0), Rgb(33, 145, 140));
        // Luminance increases monotonically.
        let mut last = -1.0;
        for i in 0..=100 {
            let l = viridis(f64::from(i) / 100.0).luminance();
            assert!(l > last, "{i}");
            last = l;
        }
    }

    #[test]
    fn hex_round_trip() {
        let c = Rgb(1, 171, 255);
        assert_eq!(c.hex(), "#01abff");
        assert_eq!(Rgb::from_hex("#01abff"), Some(c));
        assert_eq!(Rgb::from_hex("#01abf"), None);
    }
}
