//! Writes every figure with synthetic data as SVG, PNG (300 dpi) and PDF.
//!
//! Usage: `cargo run --release -p convlens-show --example gallery -- [OUT_DIR]`
//! (default `gallery` in the current directory).

use std::f64::consts::PI;
use std::path::PathBuf;

use convlens_show::*;

/// A small deterministic generator (xorshift64*), so the gallery is the same on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }
}

/// A Gabor-like k×k pattern.
fn gabor(rng: &mut Rng, k: usize) -> Vec<f64> {
    let theta = rng.uniform() * PI;
    let freq = 0.5 + rng.uniform() * 1.5;
    let phase = rng.uniform() * 2.0 * PI;
    let sigma = k as f64 * 0.35;
    let c = (k as f64 - 1.0) / 2.0;
    let mut out = Vec::with_capacity(k * k);
    for y in 0..k {
        for x in 0..k {
            let (dx, dy) = (x as f64 - c, y as f64 - c);
            let u = dx * theta.cos() + dy * theta.sin();
            let env = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp();
            out.push(env * (freq * u + phase).cos() + 0.05 * rng.normal());
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "gallery".into()));
    std::fs::create_dir_all(&out)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut figures: Vec<(&str, Figure)> = Vec::new();

    // 1. Filter grid of a 16×8×3×3 layer.
    let (o, i, k) = (16, 8, 3);
    let mut w = Vec::with_capacity(o * i * k * k);
    for _ in 0..o * i {
        let amp = 0.05 + 0.25 * rng.uniform();
        w.extend(gabor(&mut rng, k).into_iter().map(|v| (v * amp) as f32));
    }
    figures.push((
        "filter_grid",
        filter_grid("layer1.0.conv1", &w, [o, i, k, k], 8, 16)?,
    ));
    // Same layer shape but 64×64: truncated display.
    let (o2, i2) = (64, 64);
    let w2: Vec<f32> = (0..o2 * i2 * 9)
        .map(|_| (0.1 * rng.normal()) as f32)
        .collect();
    figures.push((
        "filter_grid_large",
        filter_grid("layer3.1.conv2", &w2, [o2, i2, 3, 3], 32, 48)?,
    ));

    // 2. RGB stem filters, 64×3×7×7.
    let (o, k) = (64, 7);
    let mut w = Vec::with_capacity(o * 3 * k * k);
    for _ in 0..o {
        let g = gabor(&mut rng, k);
        let mix = [rng.normal(), rng.normal(), rng.normal()];
        for m in mix {
            w.extend(g.iter().map(|v| (v * m * 0.2) as f32));
        }
    }
    figures.push((
        "rgb_filters",
        rgb_filters("conv1 (RGB stem)", &w, [o, 3, k, k])?,
    ));

    // 3. One filter per layer.
    let strip: Vec<(String, Vec<f32>, usize, usize)> = (0..20)
        .map(|d| {
            let k = match d {
                0 => 7,
                d if d % 5 == 4 => 1,
                _ => 3,
            };
            let f: Vec<f32> = gabor(&mut rng, k).into_iter().map(|v| v as f32).collect();
            (format!("layer{}.conv", d), f, k, k)
        })
        .collect();
    figures.push((
        "filter_strip",
        filter_strip("first filter of every conv layer", &strip)?,
    ));

    // 4. PCA basis: DCT-like eigen-images per group.
    let dct = |u: usize, v: usize| -> Vec<f64> {
        let mut out = Vec::new();
        for y in 0..3 {
            for x in 0..3 {
                let a = ((2 * x + 1) as f64 * u as f64 * PI / 6.0).cos();
                let b = ((2 * y + 1) as f64 * v as f64 * PI / 6.0).cos();
                out.push(a * b);
            }
        }
        out
    };
    let order = [
        (0, 0),
        (1, 0),
        (0, 1),
        (1, 1),
        (2, 0),
        (0, 2),
        (2, 1),
        (1, 2),
        (2, 2),
    ];
    let panel = |name: &str, decay: f64, rng: &mut Rng| {
        let comps: Vec<Vec<f64>> = order
            .iter()
            .map(|&(u, v)| {
                dct(u, v)
                    .into_iter()
                    .map(|x| x + 0.05 * rng.normal())
                    .collect()
            })
            .collect();
        let raw: Vec<f64> = (0..9).map(|j| (-(j as f64) * decay).exp()).collect();
        let s: f64 = raw.iter().sum();
        BasisPanel {
            name: name.to_string(),
            components: comps,
            ratios: raw.iter().map(|r| r / s).collect(),
            kh: 3,
            kw: 3,
        }
    };
    let panels = vec![
        panel("all models", 0.55, &mut rng),
        panel("normal training", 0.5, &mut rng),
        panel("adversarial training (robust)", 0.8, &mut rng),
    ];
    figures.push(("basis_images", basis_images(&panels)?));
    let groups: Vec<(String, Vec<f64>)> = panels
        .iter()
        .map(|p| (p.name.clone(), p.ratios.clone()))
        .collect();
    figures.push(("cumulative_variance", cumulative_variance(&groups)?));

    // 6. Ridge plot.
    let names = [
        "normal",
        "robust",
        "classification",
        "segmentation",
        "GAN discriminator",
    ];
    let npts = 200;
    let ridge: Vec<(String, Vec<Vec<f64>>)> = names
        .iter()
        .enumerate()
        .map(|(g, n)| {
            let comps = (0..9)
                .map(|c| {
                    let mu = if c == 0 { -0.3 + 0.1 * g as f64 } else { 0.0 };
                    let sd = 0.5 / (1.0 + c as f64 * 0.5) * (1.0 + 0.15 * g as f64);
                    (0..npts)
                        .map(|p| {
                            let x = -1.0 + 2.0 * p as f64 / (npts - 1) as f64;
                            (-(x - mu) * (x - mu) / (2.0 * sd * sd)).exp() / sd
                        })
                        .collect()
                })
                .collect();
            (n.to_string(), comps)
        })
        .collect();
    figures.push(("ridge_plot", ridge_plot((-1.0, 1.0), 9, &ridge)?));

    // 7. KL heat map.
    let labels: Vec<String> = [
        "ImageNet",
        "CIFAR-10",
        "CIFAR-100",
        "MNIST",
        "Fashion-MNIST",
        "SVHN",
        "COCO",
        "Cityscapes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let n = labels.len();
    let pos: Vec<f64> = (0..n).map(|_| rng.uniform() * 3.0).collect();
    let kl: Vec<Vec<f64>> = (0..n)
        .map(|a| {
            (0..n)
                .map(|b| {
                    if a == b {
                        0.0
                    } else {
                        0.05 * (pos[a] - pos[b]).powi(2) + 0.01
                    }
                })
                .collect()
        })
        .collect();
    figures.push(("kl_heatmap", kl_heatmap(&labels, &kl, true)?));

    // 8. Divergence by depth.
    let mut depth: Vec<String> = vec!["first".to_string()];
    depth
        .extend((0..10).map(|d| format!("({:.1}, {:.1}]", d as f64 / 10.0, (d + 1) as f64 / 10.0)));
    let series: Vec<(String, Vec<Option<f64>>)> = vec![
        (
            "normal vs robust".to_string(),
            (0..depth.len())
                .map(|d| Some(0.02 + 0.01 * d as f64 + 0.01 * rng.uniform()))
                .collect(),
        ),
        (
            "CIFAR-10 vs ImageNet".to_string(),
            (0..depth.len())
                .map(|d| {
                    if d == 0 {
                        None
                    } else {
                        Some(0.03 + 0.004 * d as f64 + 0.01 * rng.uniform())
                    }
                })
                .collect(),
        ),
    ];
    let floor: Vec<Option<f64>> = (0..depth.len())
        .map(|d| {
            if d == 0 {
                None
            } else {
                Some(0.012 + 0.002 * d as f64)
            }
        })
        .collect();
    figures.push((
        "divergence_by_depth",
        divergence_by_depth(&depth, &series, Some(&floor))?,
    ));

    // 9. Metric boxes: 3 metrics × 3 datasets and a one-column variant.
    let metrics: Vec<String> = ["sparsity", "variance entropy", "orthogonality"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let columns: Vec<String> = ["CIFAR-10", "CIFAR-100", "ImageNet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let bdepth: Vec<String> = ["first", "(0, .25]", "(.25, .5]", "(.5, .75]", "(.75, 1]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let groups2: Vec<String> = vec!["normal".into(), "robust".into()];
    let sample = |m: usize, c: usize, d: usize, g: usize| -> Vec<f64> {
        let mut r = Rng(0x1234_5678
            ^ ((m as u64) << 40)
            ^ ((c as u64) << 32)
            ^ ((d as u64) << 16)
            ^ g as u64);
        let base = match m {
            0 => 0.05 + 0.05 * d as f64 + 0.08 * g as f64,
            1 => 0.6 + 0.05 * d as f64 - 0.1 * g as f64 + 0.03 * c as f64,
            _ => 0.8 - 0.04 * d as f64 + 0.05 * g as f64,
        };
        (0..60)
            .map(|_| base + 0.06 * r.normal() + if r.uniform() < 0.04 { 0.3 } else { 0.0 })
            .collect()
    };
    figures.push((
        "metric_boxes",
        metric_boxes(&metrics, &columns, &bdepth, &groups2, &sample)?,
    ));
    figures.push((
        "metric_boxes_one_column",
        metric_boxes(
            &metrics,
            &["ImageNet".to_string()],
            &bdepth,
            &groups2,
            &|m, _, d, g| sample(m, 2, d, g),
        )?,
    ));

    // 10. 2-D density of (c0, c1).
    let bins = 60;
    let mut counts = vec![vec![0.0; bins]; bins];
    for _ in 0..200_000 {
        let a = rng.normal() * 0.3;
        let b = 0.5 * a + rng.normal() * 0.15;
        let ix = ((a + 1.0) / 2.0 * bins as f64).floor();
        let iy = ((b + 1.0) / 2.0 * bins as f64).floor();
        if (0.0..bins as f64).contains(&ix) && (0.0..bins as f64).contains(&iy) {
            counts[ix as usize][iy as usize] += 1.0;
        }
    }
    figures.push((
        "density_2d",
        density_2d("all filters", &counts, (-1.0, 1.0), (-1.0, 1.0))?,
    ));

    // 11. Stem activations: a synthetic image, an FGSM-like perturbation, 3×3×3 filters.
    let (h, wd) = (32, 32);
    let img: Vec<[f64; 3]> = (0..h * wd)
        .map(|p| {
            let (y, x) = ((p / wd) as f64, (p % wd) as f64);
            [
                0.5 + 0.4 * (x / 5.0).sin(),
                0.5 + 0.4 * ((x + y) / 7.0).cos(),
                0.5 + 0.4 * (y / 4.0).sin(),
            ]
        })
        .collect();
    let pert: Vec<[f64; 3]> = img
        .iter()
        .map(|p| {
            let mut q = *p;
            for v in &mut q {
                *v += if rng.uniform() < 0.5 {
                    -8.0 / 255.0
                } else {
                    8.0 / 255.0
                };
            }
            q
        })
        .collect();
    let conv = |im: &[[f64; 3]], f: &[f64]| -> Vec<f32> {
        let mut out = vec![0.0f32; h * wd];
        for y in 0..h {
            for x in 0..wd {
                let mut s = 0.0;
                for c in 0..3 {
                    for dy in 0..3 {
                        for dx in 0..3 {
                            let (yy, xx) = (y + dy, x + dx);
                            if yy >= 1 && xx >= 1 && yy - 1 < h && xx - 1 < wd {
                                s += im[(yy - 1) * wd + xx - 1][c] * f[c * 9 + dy * 3 + dx];
                            }
                        }
                    }
                }
                out[y * wd + x] = s as f32;
            }
        }
        out
    };
    let cols: Vec<StemColumn> = (0..6)
        .map(|c| {
            let g = gabor(&mut rng, 3);
            let mix = [rng.normal(), rng.normal(), rng.normal()];
            let f: Vec<f64> = mix
                .iter()
                .flat_map(|m| g.iter().map(move |v| v * m * 0.3))
                .collect();
            StemColumn {
                label: format!("ch {}", c * 5),
                filter: f.iter().map(|&v| v as f32).collect(),
                in_ch: 3,
                kh: 3,
                kw: 3,
                clean: Plane {
                    data: conv(&img, &f),
                    h,
                    w: wd,
                },
                perturbed: Plane {
                    data: conv(&pert, &f),
                    h,
                    w: wd,
                },
            }
        })
        .collect();
    figures.push((
        "stem_activations",
        stem_activations("conv1 under an L\u{221e} = 8/255 perturbation", &cols)?,
    ));

    for (name, fig) in &figures {
        fig.save_all(&out.join(name))?;
        println!(
            "{name}: {:.0}x{:.0} pt, {} bytes SVG",
            fig.width_pt,
            fig.height_pt,
            fig.svg.len()
        );
    }
    Ok(())
}
