//! Showing decoded frames in an OpenCV highgui window.
//!
//! OpenCV's GUI backends (Qt in particular) abort the whole process when there is no display
//! server, which no `Result` can catch. So [`Window::open`] checks `DISPLAY` / `WAYLAND_DISPLAY`
//! first and returns [`DisplayError::NoDisplay`] without touching highgui when neither is set.
//! Nothing else in this module calls highgui before a `Window` exists.

use std::ffi::OsString;
use std::marker::PhantomData;

use opencv::core::{Mat, Vec3b};
use opencv::{highgui, imgproc};

use super::{FrameSizeError, VideoFrameRgb};

/// Errors from the display window.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// Neither `DISPLAY` nor `WAYLAND_DISPLAY` is set, so no window can be opened.
    #[error(
        "no display: neither DISPLAY nor WAYLAND_DISPLAY is set (run in a desktop session, \
         under Xvfb, or without video output)"
    )]
    NoDisplay,
    /// The frame's buffer disagrees with its dimensions.
    #[error("cannot show frame: {0}")]
    BadFrame(#[from] FrameSizeError),
    /// The frame is too large for OpenCV (a side above `i32::MAX`) or empty.
    #[error("cannot show a {width}x{height} frame")]
    BadSize {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
    /// An OpenCV call failed.
    #[error("OpenCV {op} failed: {source}")]
    OpenCv {
        /// The call ("namedWindow", "imshow", ...).
        op: &'static str,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
}

fn cv(op: &'static str) -> impl FnOnce(opencv::Error) -> DisplayError {
    move |source| DisplayError::OpenCv { op, source }
}

/// A key press or window event from [`Window::poll_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `q`, `Q`, Esc, or the window was closed: the player should stop.
    Quit,
    /// Space bar (pause, by convention).
    Space,
    /// Another printable ASCII key.
    Char(char),
    /// Any other key code as OpenCV reports it.
    Other(i32),
}

impl Key {
    /// Maps an OpenCV `waitKey` code (already known to be a key, i.e. not -1).
    fn from_code(code: i32) -> Self {
        match code {
            27 | 0x71 | 0x51 => Key::Quit, // Esc, q, Q
            0x20 => Key::Space,
            0x21..=0x7E => Key::Char(char::from(code as u8)),
            _ => Key::Other(code),
        }
    }
}

/// True if a display server is named by the given `DISPLAY` / `WAYLAND_DISPLAY` values
/// (non-empty). Takes the values rather than reading the environment so it can be tested.
pub fn display_available(display: Option<OsString>, wayland_display: Option<OsString>) -> bool {
    [display, wayland_display]
        .into_iter()
        .any(|v| v.is_some_and(|v| !v.is_empty()))
}

/// An OpenCV window showing RGB frames.
///
/// Use it from one thread, preferably the main thread (GUI toolkits are thread-affine; with
/// OpenCV's Qt backend a window driven from another thread works but Qt warns about timers at
/// exit; the type is not `Send`). Call
/// [`poll_key`](Self::poll_key) after every [`show_rgb`](Self::show_rgb), and at least every
/// few tens of milliseconds while idle: it is what lets highgui paint and handle events.
/// Dropping the window destroys it.
pub struct Window {
    title: String,
    bgr: Mat,
    shown_size: Option<(u32, u32)>,
    seen_visible: bool,
    closed: bool,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("title", &self.title)
            .field("shown_size", &self.shown_size)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Window {
    /// Opens a resizable window titled `title` (which also names it inside OpenCV, so use a
    /// different title per window).
    ///
    /// Returns [`DisplayError::NoDisplay`] without calling OpenCV when neither `DISPLAY` nor
    /// `WAYLAND_DISPLAY` is set.
    pub fn open(title: &str) -> Result<Self, DisplayError> {
        Self::open_with_env(
            title,
            std::env::var_os("DISPLAY"),
            std::env::var_os("WAYLAND_DISPLAY"),
        )
    }

    /// [`open`](Self::open) with the values of `DISPLAY` and `WAYLAND_DISPLAY` passed in, so a
    /// caller (and a test) decides without reading or changing the process environment.
    pub fn open_with_env(
        title: &str,
        display: Option<OsString>,
        wayland_display: Option<OsString>,
    ) -> Result<Self, DisplayError> {
        if !display_available(display, wayland_display) {
            return Err(DisplayError::NoDisplay);
        }
        highgui::named_window(
            title,
            highgui::WINDOW_NORMAL | highgui::WINDOW_KEEPRATIO | highgui::WINDOW_GUI_NORMAL,
        )
        .map_err(cv("namedWindow"))?;
        Ok(Self {
            title: title.to_owned(),
            bgr: Mat::default(),
            shown_size: None,
            seen_visible: false,
            closed: false,
            _not_send: PhantomData,
        })
    }

    /// The window's title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// Shows `frame` (converted to BGR into a reused buffer). The window takes the frame's
    /// size on the first frame and whenever the size changes; the user may resize it after.
    pub fn show_rgb(&mut self, frame: &VideoFrameRgb) -> Result<(), DisplayError> {
        frame.validate()?;
        let bad_size = || DisplayError::BadSize {
            width: frame.width,
            height: frame.height,
        };
        let w = i32::try_from(frame.width).map_err(|_| bad_size())?;
        let h = i32::try_from(frame.height).map_err(|_| bad_size())?;
        if w == 0 || h == 0 {
            return Err(bad_size());
        }
        let rgb = Mat::new_rows_cols_with_bytes::<Vec3b>(h, w, &frame.data)
            .map_err(cv("Mat from RGB bytes"))?;
        imgproc::cvt_color(&rgb, &mut self.bgr, imgproc::COLOR_RGB2BGR, 0)
            .map_err(cv("cvtColor"))?;
        if self.shown_size != Some((frame.width, frame.height)) {
            highgui::resize_window(&self.title, w, h).map_err(cv("resizeWindow"))?;
            self.shown_size = Some((frame.width, frame.height));
        }
        highgui::imshow(&self.title, &self.bgr).map_err(cv("imshow"))?;
        Ok(())
    }

    /// Shows a packed BGR frame (`B, G, R` per pixel, rows top to bottom, no padding: what
    /// turbojpeg decodes to with `PixelFormat::BGR`), handing the bytes to OpenCV as they are,
    /// with no conversion. Sizes the window like [`show_rgb`](Self::show_rgb).
    pub fn show_bgr(&mut self, width: u32, height: u32, bgr: &[u8]) -> Result<(), DisplayError> {
        self.show_bgr_fit((width, height), width, height, bgr)
    }

    /// [`show_bgr`](Self::show_bgr) for a picture decoded smaller than the stream's frames
    /// (DCT scaling to the window's [`image_size`](Self::image_size)): the window is sized to
    /// `frame` (the stream's frame size, in pixels) on the first frame and whenever it changes,
    /// never to the decoded size, and OpenCV scales the `width` x `height` picture to the
    /// window.
    pub fn show_bgr_fit(
        &mut self,
        frame: (u32, u32),
        width: u32,
        height: u32,
        bgr: &[u8],
    ) -> Result<(), DisplayError> {
        let expected = u64::from(width)
            .checked_mul(u64::from(height))
            .and_then(|p| p.checked_mul(3))
            .unwrap_or(u64::MAX);
        if expected != bgr.len() as u64 {
            return Err(DisplayError::BadFrame(FrameSizeError {
                width,
                height,
                expected,
                actual: bgr.len() as u64,
            }));
        }
        let bad_size = || DisplayError::BadSize { width, height };
        let w = i32::try_from(width).map_err(|_| bad_size())?;
        let h = i32::try_from(height).map_err(|_| bad_size())?;
        if w == 0 || h == 0 {
            return Err(bad_size());
        }
        let mat =
            Mat::new_rows_cols_with_bytes::<Vec3b>(h, w, bgr).map_err(cv("Mat from BGR bytes"))?;
        if self.shown_size != Some(frame) {
            let bad_size = || DisplayError::BadSize {
                width: frame.0,
                height: frame.1,
            };
            let fw = i32::try_from(frame.0).map_err(|_| bad_size())?;
            let fh = i32::try_from(frame.1).map_err(|_| bad_size())?;
            highgui::resize_window(&self.title, fw, fh).map_err(cv("resizeWindow"))?;
            self.shown_size = Some(frame);
        }
        highgui::imshow(&self.title, &mat).map_err(cv("imshow"))?;
        Ok(())
    }

    /// The size of the window's image area in pixels (what a picture is scaled to), or `None`
    /// when the backend cannot tell or the area is empty (minimised).
    pub fn image_size(&self) -> Option<(u32, u32)> {
        let r = highgui::get_window_image_rect(&self.title).ok()?;
        let w = u32::try_from(r.width).ok().filter(|&w| w > 0)?;
        let h = u32::try_from(r.height).ok().filter(|&h| h > 0)?;
        Some((w, h))
    }

    /// Runs the GUI event loop for up to 1 ms and reports a key press, or [`Key::Quit`] once the
    /// window has been closed by the user. `q`, `Q` and Esc also give [`Key::Quit`].
    pub fn poll_key(&mut self) -> Option<Key> {
        if self.closed {
            return Some(Key::Quit);
        }
        let code = match highgui::wait_key(1) {
            Ok(code) => code,
            Err(e) => {
                log::warn!("OpenCV waitKey failed: {e}");
                -1
            }
        };
        if code >= 0 {
            let key = Key::from_code(code);
            if key == Key::Quit {
                self.closed = true;
            }
            return Some(key);
        }
        // Closed by the window manager? Some backends report -1 for an unknown property, so
        // only trust "invisible" after the window has once been reported visible.
        match highgui::get_window_property(&self.title, highgui::WND_PROP_VISIBLE) {
            Ok(v) if v >= 1.0 => self.seen_visible = true,
            Ok(_) if self.seen_visible => {
                self.closed = true;
                return Some(Key::Quit);
            }
            Ok(_) => {}
            Err(e) if self.seen_visible => {
                // The window no longer exists.
                log::debug!("getWindowProperty failed after the window was shown: {e}");
                self.closed = true;
                return Some(Key::Quit);
            }
            Err(_) => {}
        }
        None
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if let Err(e) = highgui::destroy_window(&self.title) {
            log::debug!("OpenCV destroyWindow({:?}): {e}", self.title);
        }
        // Let the backend process the destroy event.
        let _ = highgui::wait_key(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_display_is_an_error_without_touching_opencv() {
        assert!(!display_available(None, None));
        assert!(!display_available(Some("".into()), Some("".into())));
        assert!(display_available(Some(":99".into()), None));
        assert!(display_available(None, Some("wayland-0".into())));
        // With both unset, open must refuse before any highgui call (which could abort).
        let err = Window::open_with_env("framecast test", None, Some("".into())).unwrap_err();
        assert!(matches!(err, DisplayError::NoDisplay));
        assert!(err.to_string().contains("DISPLAY"));
    }

    #[test]
    fn key_codes() {
        assert_eq!(Key::from_code(27), Key::Quit);
        assert_eq!(Key::from_code(i32::from(b'q')), Key::Quit);
        assert_eq!(Key::from_code(i32::from(b'Q')), Key::Quit);
        assert_eq!(Key::from_code(32), Key::Space);
        assert_eq!(Key::from_code(i32::from(b'f')), Key::Char('f'));
        assert_eq!(Key::from_code(0x10FF51), Key::Other(0x10FF51)); // not 'Q'
        assert_eq!(Key::from_code(13), Key::Other(13));
    }

    /// Opens a window, shows frames (RGB and BGR), and sees it closed from outside (as by the
    /// window manager), then dropped. Needs a display: CI runs the tests under `xvfb-run`,
    /// and there (`CI` or `FRAMECAST_REQUIRE_DISPLAY` set) a missing display fails the test
    /// instead of skipping it; elsewhere (a developer's SSH session) it is skipped, loudly.
    #[test]
    fn window_opens_shows_and_closes() {
        let (display, wayland) = (
            std::env::var_os("DISPLAY"),
            std::env::var_os("WAYLAND_DISPLAY"),
        );
        if !display_available(display.clone(), wayland.clone()) {
            let required = ["CI", "FRAMECAST_REQUIRE_DISPLAY"]
                .iter()
                .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
            assert!(
                !required,
                "no DISPLAY: run the tests under xvfb-run (xvfb-run -a cargo test)"
            );
            eprintln!("no DISPLAY: skipping the window test (run under xvfb-run to include it)");
            return;
        }
        let title = "framecast display test";
        let mut w = Window::open_with_env(title, display, wayland).unwrap();
        assert_eq!(w.title(), title);
        let mut p = crate::media::TestPattern::new(320, 240, 30, 1).unwrap();
        for i in 0..3 {
            w.show_rgb(&p.frame(i)).unwrap();
            assert_ne!(w.poll_key(), Some(Key::Quit), "closed by itself");
        }
        // BGR straight from a decoder: blue.
        let blue: Vec<u8> = [255u8, 0, 0].repeat(320 * 240);
        for _ in 0..20 {
            w.show_bgr(320, 240, &blue).unwrap();
            assert_ne!(w.poll_key(), Some(Key::Quit), "closed by itself");
        }
        assert_eq!(w.image_size(), Some((320, 240)));
        // A picture decoded at 1/2 of a 640x480 stream: the window takes the stream's size.
        let small: Vec<u8> = [0u8, 255, 0].repeat(320 * 240);
        for _ in 0..20 {
            w.show_bgr_fit((640, 480), 320, 240, &small).unwrap();
            assert_ne!(w.poll_key(), Some(Key::Quit), "closed by itself");
        }
        assert_eq!(
            w.image_size(),
            Some((640, 480)),
            "the window takes the stream's size, not the decoded picture's"
        );
        // The user shrinks the window: its image area follows (what the player's decoder
        // scales to), and showing more frames of the same stream leaves it as the user set it.
        highgui::resize_window(title, 160, 120).unwrap();
        for _ in 0..20 {
            w.show_bgr_fit((640, 480), 160, 120, &small[..160 * 120 * 3])
                .unwrap();
            assert_ne!(w.poll_key(), Some(Key::Quit), "closed by itself");
        }
        assert_eq!(w.image_size(), Some((160, 120)));
        assert!(matches!(
            w.show_bgr(320, 240, &blue[3..]),
            Err(DisplayError::BadFrame(_))
        ));
        assert!(matches!(
            w.show_bgr(0, 0, &[]),
            Err(DisplayError::BadSize { .. })
        ));
        let mut bad = VideoFrameRgb::black(4, 4);
        bad.data.pop();
        assert!(matches!(w.show_rgb(&bad), Err(DisplayError::BadFrame(_))));
        // Closed from outside: poll_key reports Quit, and keeps doing so.
        highgui::destroy_window(title).unwrap();
        let quit = (0..50).any(|_| w.poll_key() == Some(Key::Quit));
        assert!(quit, "closing the window is seen as Quit");
        assert_eq!(w.poll_key(), Some(Key::Quit));
        drop(w);
    }
}
