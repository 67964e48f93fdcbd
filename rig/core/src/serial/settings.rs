//! How a serial port is configured in a rig file: the device, its line settings, and how often to
//! look for it again when it vanishes.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The highest speed accepted, in baud: what common USB UARTs reach.
const FASTEST_BAUD: u32 = 4_000_000;

/// The longest pause between two attempts to reopen a vanished device, in milliseconds.
const SLOWEST_RECONNECT_MS: u64 = 60_000;

/// A serial port as a rig configuration describes it, e.g.
/// `{ device = "/dev/serial/by-id/usb-FTDI_FT232R_A50285BI-if00-port0", baud = 115200 }`.
/// Only `device` is required; the rest defaults to 115200 8N1, no flow control, a reopen
/// attempt every 200 ms. Check it with [`SerialSettings::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSettings {
    /// The device path; prefer a stable name under `/dev/serial/by-id/` to `/dev/ttyUSB0`, which
    /// can change when the adapter is plugged in again.
    pub device: String,
    /// Line speed in baud (default 115200).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Bits per character, 5 to 8 (default 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Parity bit (default none).
    #[serde(default)]
    pub parity: Parity,
    /// Stop bits, 1 or 2 (default 1).
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Flow control (default none).
    #[serde(default)]
    pub flow_control: FlowControl,
    /// How often to try to reopen the device after it vanished, in milliseconds (default 200).
    #[serde(default = "default_reconnect_ms")]
    pub reconnect_ms: u64,
}

/// The parity bit of each character.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

/// How the two ends pace each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// No flow control.
    #[default]
    None,
    /// XON/XOFF characters in the data.
    Software,
    /// RTS/CTS lines.
    Hardware,
}

/// One wrong value of [`SerialSettings`]: which field, and a sentence saying what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// The field, as spelled in the configuration, e.g. `baud`.
    pub field: &'static str,
    /// What is wrong and what to write instead, e.g. "baud 0 is not a serial speed: …".
    pub sentence: String,
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence)
    }
}

fn default_baud() -> u32 {
    115_200
}

fn default_data_bits() -> u8 {
    8
}

fn default_stop_bits() -> u8 {
    1
}

fn default_reconnect_ms() -> u64 {
    200
}

impl SerialSettings {
    /// The settings for `device` with every other field at its default: 115200 8N1, no flow
    /// control, a reopen attempt every 200 ms.
    pub fn new(device: impl Into<String>) -> SerialSettings {
        SerialSettings {
            device: device.into(),
            baud: default_baud(),
            data_bits: default_data_bits(),
            parity: Parity::default(),
            stop_bits: default_stop_bits(),
            flow_control: FlowControl::default(),
            reconnect_ms: default_reconnect_ms(),
        }
    }

    /// Every wrong value, one problem each, in field order; empty when the settings are usable.
    pub fn validate(&self) -> Vec<SettingProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &'static str, sentence: String| {
            problems.push(SettingProblem { field, sentence });
        };
        if self.device.is_empty() {
            problem(
                "device",
                "device is empty: name the serial port, e.g. /dev/serial/by-id/usb-FTDI_…".into(),
            );
        } else if !self.device.starts_with('/') {
            problem(
                "device",
                format!(
                    "device {} is not an absolute path: write /dev/{} or its /dev/serial/by-id/ name",
                    self.device, self.device
                ),
            );
        }
        if self.baud == 0 || self.baud > FASTEST_BAUD {
            problem(
                "baud",
                format!(
                    "baud {} is not a serial speed: use the terminal's, 1 to {FASTEST_BAUD}, e.g. 115200",
                    self.baud
                ),
            );
        }
        if !(5..=8).contains(&self.data_bits) {
            problem(
                "data_bits",
                format!("data_bits {} is not 5, 6, 7 or 8", self.data_bits),
            );
        }
        if !(1..=2).contains(&self.stop_bits) {
            problem("stop_bits", format!("stop_bits {} is not 1 or 2", self.stop_bits));
        }
        if self.reconnect_ms == 0 {
            problem(
                "reconnect_ms",
                "reconnect_ms 0 would retry without pause: use e.g. 200".into(),
            );
        } else if self.reconnect_ms > SLOWEST_RECONNECT_MS {
            problem(
                "reconnect_ms",
                format!(
                    "reconnect_ms {} is over a minute: the console would stay deaf long after the \
                     adapter is back; use e.g. 200",
                    self.reconnect_ms
                ),
            );
        }
        problems
    }

    /// The pause between two attempts to reopen a vanished device.
    pub fn reconnect(&self) -> Duration {
        Duration::from_millis(self.reconnect_ms)
    }

    /// The port builder for these settings (to be validated first).
    pub(super) fn builder(&self) -> tokio_serial::SerialPortBuilder {
        let data_bits = match self.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        };
        let parity = match self.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Odd => tokio_serial::Parity::Odd,
            Parity::Even => tokio_serial::Parity::Even,
        };
        let stop_bits = match self.stop_bits {
            2 => tokio_serial::StopBits::Two,
            _ => tokio_serial::StopBits::One,
        };
        let flow_control = match self.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::Software => tokio_serial::FlowControl::Software,
            FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        };
        tokio_serial::new(&self.device, self.baud)
            .data_bits(data_bits)
            .parity(parity)
            .stop_bits(stop_bits)
            .flow_control(flow_control)
    }
}
