//! Writing a figure to PNG and SVG, the embedded font, and the error type.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::glyphs::CrispText;

/// The font every plot is drawn with, embedded so no system font is needed at run time.
pub(crate) static DEJAVU_SANS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/fonts/DejaVuSans.ttf"
));

/// The two files a plot was written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFiles {
    /// `STEM.png`: a bitmap for a quick look and for reports.
    pub png: PathBuf,
    /// `STEM.svg`: the same plot as vector graphics, its text searchable.
    pub svg: PathBuf,
}

/// A plot file could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not write the plot {}: {reason}", path.display())]
pub struct RecordsError {
    /// The file (or the folder for it) that could not be written.
    pub path: PathBuf,
    /// Why, in words.
    pub reason: String,
}

impl RecordsError {
    fn new(path: &Path, reason: impl std::fmt::Display) -> RecordsError {
        RecordsError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// The result of drawing on a backend.
pub(crate) type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Something that draws itself on any plotters backend, so one drawing code serves PNG and SVG.
pub(crate) trait Figure {
    /// Size in pixels, width and height.
    fn size(&self) -> (u32, u32);

    /// Draws the whole figure on `root`, which is already filled white.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Writes `figure` to `STEM.png` and `STEM.svg`, creating the folder they go in if needed.
pub(crate) fn render(stem: &Path, figure: &impl Figure) -> Result<PlotFiles, RecordsError> {
    let png = with_suffix(stem, "png");
    let svg = with_suffix(stem, "svg");
    register_font().map_err(|reason| RecordsError::new(&png, reason))?;
    if let Some(folder) = png.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .map_err(|e| RecordsError::new(folder, format!("cannot create the folder: {e}")))?;
    }
    let size = figure.size();

    {
        let root = CrispText::new(BitMapBackend::new(&png, size)).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| figure.draw(&root))
            .and_then(|()| root.present())
            .map_err(|e| RecordsError::new(&png, e))?;
    }

    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| figure.draw(&root))
            .and_then(|()| root.present())
            .map_err(|e| RecordsError::new(&svg, e))?;
    }
    std::fs::write(&svg, text).map_err(|e| RecordsError::new(&svg, e))?;
    Ok(PlotFiles { png, svg })
}

/// `STEM.EXT`, appended rather than replacing what follows a dot in the stem (`sweep.power`).
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut name = OsString::from(stem.as_os_str());
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// Registers the embedded font once for every family name plotters may ask for.
fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            for family in ["sans-serif", "serif", "monospace"] {
                plotters::style::register_font(family, FontStyle::Normal, DEJAVU_SANS).map_err(|_| {
                    "the embedded font fixtures/fonts/DejaVuSans.ttf is not a valid font".to_string()
                })?;
            }
            Ok(())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_is_appended_not_substituted() {
        assert_eq!(
            with_suffix(Path::new("out/sweep.power"), "png"),
            PathBuf::from("out/sweep.power.png")
        );
        assert_eq!(with_suffix(Path::new("plot"), "svg"), PathBuf::from("plot.svg"));
    }

    #[test]
    fn the_embedded_font_registers() {
        assert_eq!(register_font(), Ok(()));
    }
}
