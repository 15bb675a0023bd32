//! Helpers shared by the figure tests.
#![allow(dead_code)]

use convlens_show::Figure;
use roxmltree::{Document, Node};

/// Renders `fig` to PNG and PDF and checks size, non-blankness, PDF header and embedded font.
/// Returns the number of non-white pixels at 1 px/pt.
pub fn check_outputs(fig: &Figure) -> usize {
    let r = fig.rasterize(1.0).expect("rasterize");
    assert_eq!(r.width, fig.width_pt.ceil() as u32, "raster width");
    assert_eq!(r.height, fig.height_pt.ceil() as u32, "raster height");
    assert_eq!(r.rgba.len(), (r.width * r.height * 4) as usize);
    let ink = r.count_not([255, 255, 255]);
    let total = (r.width * r.height) as usize;
    assert!(
        ink * 100 > total,
        "blank raster: {ink} of {total} pixels drawn"
    );
    assert!(ink < total, "raster entirely non-white");

    let png = fig.to_png(2.0).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR width/height at 2 px/pt.
    let w = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let h = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!(w, (fig.width_pt * 2.0).ceil() as u32);
    assert_eq!(h, (fig.height_pt * 2.0).ceil() as u32);

    let pdf = fig.to_pdf().expect("pdf");
    assert!(pdf.starts_with(b"%PDF"), "PDF header");
    assert!(contains(&pdf, b"/FontFile2"), "PDF embeds a TrueType font");
    assert!(
        contains(&pdf, b"DejaVuSans"),
        "PDF names the DejaVu Sans font"
    );
    // Page size equals the figure size in points.
    let (w, h) = media_box(&pdf);
    assert!(
        (w - fig.width_pt).abs() < 0.01,
        "PDF width {w} vs {}",
        fig.width_pt
    );
    assert!(
        (h - fig.height_pt).abs() < 0.01,
        "PDF height {h} vs {}",
        fig.height_pt
    );
    ink
}

/// Width and height of the first `/MediaBox [0 0 w h]`.
pub fn media_box(pdf: &[u8]) -> (f64, f64) {
    let key = b"/MediaBox [";
    let at = pdf
        .windows(key.len())
        .position(|w| w == key)
        .expect("MediaBox");
    let rest = &pdf[at + key.len()..];
    let end = rest.iter().position(|&b| b == b']').expect("]");
    let nums: Vec<f64> = std::str::from_utf8(&rest[..end])
        .expect("ascii")
        .split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect();
    assert_eq!(nums.len(), 4, "MediaBox has 4 numbers");
    (nums[2] - nums[0], nums[3] - nums[1])
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn parse(svg: &str) -> Document<'_> {
    Document::parse(svg).expect("SVG is well-formed XML")
}

pub fn has_class(n: &Node, class: &str) -> bool {
    n.attribute("class") == Some(class)
}

/// All elements with `class`.
pub fn by_class<'a, 'i>(doc: &'a Document<'i>, class: &str) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.is_element() && has_class(n, class))
        .collect()
}

pub fn num_attr(n: &Node, name: &str) -> f64 {
    n.attribute(name)
        .unwrap_or_else(|| panic!("missing attribute {name}"))
        .parse()
        .unwrap_or_else(|_| panic!("attribute {name} is not a number"))
}

pub fn usize_attr(n: &Node, name: &str) -> usize {
    num_attr(n, name) as usize
}

/// Fills of the filled `rect` children of `n`, in order (frames with `fill="none"` skipped).
pub fn rect_fills(n: &Node) -> Vec<String> {
    n.children()
        .filter(|c| c.has_tag_name("rect") && c.attribute("fill") != Some("none"))
        .map(|c| c.attribute("fill").unwrap_or("").to_string())
        .collect()
}

/// (x, y) of `transform="translate(x y)"`.
pub fn translate(n: &Node) -> (f64, f64) {
    let t = n.attribute("transform").expect("transform");
    let inner = t
        .strip_prefix("translate(")
        .and_then(|s| s.strip_suffix(')'))
        .expect("translate()");
    let mut it = inner.split(' ').map(|v| v.parse::<f64>().expect("number"));
    (it.next().expect("x"), it.next().expect("y"))
}

/// Text content of all `text` elements.
pub fn texts(doc: &Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").to_string())
        .collect()
}

/// The points of a path made of M/L commands.
pub fn path_points(d: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for seg in d.split(['M', 'L']) {
        let seg = seg.trim_end_matches('Z');
        if seg.is_empty() {
            continue;
        }
        let mut it = seg.split(' ').map(|v| v.parse::<f64>().expect("number"));
        out.push((it.next().expect("x"), it.next().expect("y")));
    }
    out
}

/// Page y of data value `v` from the y-axis ticks (`g class="ytick"` with `data-value` and a
/// tick line), using the first and last tick of the first axis found.
pub fn y_of(doc: &Document, v: f64) -> f64 {
    let ticks: Vec<(f64, f64)> = by_class(doc, "ytick")
        .iter()
        .map(|g| {
            let value = num_attr(g, "data-value");
            let line = g
                .children()
                .rfind(|c| c.has_tag_name("line"))
                .expect("tick line");
            (value, num_attr(&line, "y1"))
        })
        .collect();
    let (v0, y0) = ticks[0];
    let (v1, y1) = *ticks
        .iter()
        .rev()
        .find(|(value, _)| *value != v0)
        .expect("two ticks");
    y0 + (v - v0) / (v1 - v0) * (y1 - y0)
}
