//! Text on bitmaps, drawn glyph by glyph with the embedded font.
//!
//! plotters' ab_glyph text drawing (0.3.7) drops each glyph's side bearing and puts the baseline
//! half an em below the top, so narrow letters drift ("reversal _pending") and text sits high.
//! [`CrispText`] wraps a bitmap backend and draws text itself: same font, same size and the same
//! layout box plotters measures with (so anchors and label areas agree), glyphs at their true
//! positions, the capitals centred in the box. Everything else goes straight to the wrapped
//! backend. SVG needs none of this: it writes text as text.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, ScaleFont};
use plotters::prelude::DrawingBackend;
use plotters::style::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind};

use crate::render::DEJAVU_SANS;

/// The embedded font, parsed once; `None` if it does not parse (then plotters draws the text).
fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(DEJAVU_SANS).ok())
        .as_ref()
}

/// A bitmap backend whose text is drawn by [`draw_glyphs`].
pub(crate) struct CrispText<DB> {
    inner: DB,
}

impl<DB> CrispText<DB> {
    pub(crate) fn new(inner: DB) -> CrispText<DB> {
        CrispText { inner }
    }
}

type Drawn<E> = Result<(), DrawingErrorKind<E>>;

impl<DB: DrawingBackend> DrawingBackend for CrispText<DB> {
    type ErrorType = DB::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Drawn<Self::ErrorType> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Drawn<Self::ErrorType> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Drawn<Self::ErrorType> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Drawn<Self::ErrorType> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Drawn<Self::ErrorType> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Drawn<Self::ErrorType> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Drawn<Self::ErrorType> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Drawn<Self::ErrorType> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Drawn<Self::ErrorType> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        self.inner.estimate_text_size(text, style)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Drawn<Self::ErrorType> {
        match font() {
            Some(font) => draw_glyphs(&mut self.inner, font, text, style, pos),
            None => self.inner.draw_text(text, style, pos),
        }
    }
}

/// Draws `text` anchored at `pos` the way plotters lays it out, each glyph at its own position.
fn draw_glyphs<DB: DrawingBackend, S: BackendTextStyle>(
    backend: &mut DB,
    font: &FontRef<'static>,
    text: &str,
    style: &S,
    pos: BackendCoord,
) -> Drawn<DB::ErrorType> {
    let color = style.color();
    if color.alpha == 0.0 {
        return Ok(());
    }
    let ((min_x, min_y), (max_x, max_y)) = style
        .layout_box(text)
        .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
    let (width, height) = (max_x - min_x, max_y - min_y);
    let dx = match style.anchor().h_pos {
        HPos::Left => 0,
        HPos::Right => -width,
        HPos::Center => -width / 2,
    };
    let dy = match style.anchor().v_pos {
        VPos::Top => 0,
        VPos::Center => -height / 2,
        VPos::Bottom => -height,
    };
    let size = style.size() as f32;
    let scaled = font.as_scaled(size);
    // Capitals (about 0.63 of the scale for DejaVu Sans) centred in the box plotters measured.
    let cap_height = font
        .outline_glyph(scaled.scaled_glyph('H'))
        .map_or(size * 0.63, |g| g.px_bounds().height());
    let baseline = (height as f32 + cap_height) / 2.0;
    let transform = style.transform();
    let (w, h) = backend.get_size();
    let mut caret = 0.0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            caret += scaled.kern(previous, id);
        }
        previous = Some(id);
        let glyph = id.with_scale_and_position(size, point(caret, baseline));
        caret += scaled.h_advance(id);
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        let mut pixels = vec![];
        outline.draw(|x, y, coverage| pixels.push((x, y, coverage)));
        for (x, y, coverage) in pixels {
            let gx = bounds.min.x as i32 + x as i32;
            let gy = bounds.min.y as i32 + y as i32;
            let (tx, ty) = transform.transform(gx + dx - min_x, gy + dy - min_y);
            let (px, py) = (pos.0 + tx, pos.1 + ty);
            if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h && coverage > 0.0 {
                backend.draw_pixel((px, py), color.mix(coverage.min(1.0) as f64))?;
            }
        }
    }
    Ok(())
}
