//! The stem figure: its data (filter, clean activation, perturbed activation per shown
//! channel), computed during the analysis, and the figure drawn from a report.

use super::{
    Activations, AnalysisOptions, Batch, ImageSet, Normalization, StemError, StemModel, StemReport,
    WorstCase,
};
use serde::Serialize;

/// The data of the stem figure: rows filter, clean activation, perturbed activation,
/// difference; one column per shown channel.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StemFigure {
    /// Title.
    pub title: String,
    /// Image shown.
    pub image: usize,
    /// What the perturbed row shows.
    pub perturbation: String,
    /// Columns.
    pub columns: Vec<FigureColumn>,
}

/// One column of the stem figure.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FigureColumn {
    /// Output channel.
    pub channel: usize,
    /// Label (the channel number).
    pub label: String,
    /// Effective filter (`in_ch × kh × kw`).
    #[serde(skip)]
    pub filter: Vec<f32>,
    /// Input channels of the filter.
    pub in_ch: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Activation height.
    pub h: usize,
    /// Activation width.
    pub w: usize,
    /// Post-ReLU activation of the clean image.
    #[serde(skip)]
    pub clean: Vec<f32>,
    /// Post-ReLU activation of the perturbed image.
    #[serde(skip)]
    pub perturbed: Vec<f32>,
}

pub(super) fn figure_data(
    model: &StemModel,
    images: &ImageSet,
    pert: &Option<(&str, Batch<'_>)>,
    worst: Option<&WorstCase>,
    norm: &Normalization,
    opts: &AnalysisOptions,
) -> Result<StemFigure, StemError> {
    let k = opts.figure_image.min(images.n.saturating_sub(1));
    let clean_img = images.clean_batch().image(k);
    let (perturbed_img, what, short): (Vec<f32>, String, &str) = match (pert, worst) {
        (Some((key, b)), _) => (
            b.image(k).to_vec(),
            format!("perturbed images {key:?}"),
            "perturbed",
        ),
        (None, Some(w)) => {
            let per = clean_img.len();
            let d = w.delta.get(k * per..(k + 1) * per).unwrap_or(&[]);
            (
                clean_img.iter().zip(d).map(|(x, d)| x + d).collect(),
                format!("worst-case δ for the stem (ε = {:.4})", w.eps),
                "worst-case δ",
            )
        }
        (None, None) => (
            clean_img.to_vec(),
            "none (clean image twice)".to_string(),
            "no perturbation",
        ),
    };
    let i = &model.info;
    let run = |img: &[f32]| -> Result<Activations, StemError> {
        let b = Batch::new(img, 1, images.c, images.h, images.w)?;
        let x = norm.apply_batch(&b)?;
        model.forward(&Batch::new(&x, 1, images.c, images.h, images.w)?)
    };
    let a = run(clean_img)?;
    let b = run(&perturbed_img)?;
    let plane = a.h * a.w;
    let cap = opts.figure_columns.clamp(1, 32);
    let mut channels: Vec<usize> = (0..i.out_channels).collect();
    if channels.len() > cap {
        // the most active channels on the clean image, shown in channel order
        let energy = |o: usize| -> f64 {
            a.post[o * plane..(o + 1) * plane]
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum()
        };
        channels.sort_by(|&p, &q| energy(q).total_cmp(&energy(p)).then(p.cmp(&q)));
        channels.truncate(cap);
        channels.sort_unstable();
    }
    let per = i.in_channels / i.groups * i.kh * i.kw;
    let columns = channels
        .iter()
        .map(|&o| FigureColumn {
            channel: o,
            label: o.to_string(),
            filter: model.weight[o * per..(o + 1) * per]
                .iter()
                .map(|&v| v as f32)
                .collect(),
            in_ch: i.in_channels / i.groups,
            kh: i.kh,
            kw: i.kw,
            h: a.h,
            w: a.w,
            clean: a.post[o * plane..(o + 1) * plane].to_vec(),
            perturbed: b.post[o * plane..(o + 1) * plane].to_vec(),
        })
        .collect();
    Ok(StemFigure {
        title: format!("{}, image {k}, {short}", model.name),
        image: k,
        perturbation: what,
        columns,
    })
}

/// The stem figure of one report (rows filter, clean, perturbed, difference), e.g. for the HTML
/// report.
pub fn figure(r: &StemReport) -> Result<convlens_show::Figure, convlens_show::ShowError> {
    let columns: Vec<convlens_show::StemColumn> = r
        .figure
        .columns
        .iter()
        .map(|c| convlens_show::StemColumn {
            label: c.label.clone(),
            filter: c.filter.clone(),
            in_ch: c.in_ch,
            kh: c.kh,
            kw: c.kw,
            clean: convlens_show::Plane {
                data: c.clean.clone(),
                h: c.h,
                w: c.w,
            },
            perturbed: convlens_show::Plane {
                data: c.perturbed.clone(),
                h: c.h,
                w: c.w,
            },
        })
        .collect();
    convlens_show::stem_activations(&r.figure.title, &columns)
}
