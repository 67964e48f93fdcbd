//! The Raspberry Pi 40-pin header: which BCM GPIOs it carries, on which header pin, with which
//! special function, which are hardware-PWM capable, and checks the rig configuration runs over
//! the pins it uses.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// The header's BCM GPIOs: (BCM number, header pin, special function).
const HEADER: [(u32, u32, Option<&str>); 26] = [
    (2, 3, Some("I2C1 SDA")),
    (3, 5, Some("I2C1 SCL")),
    (4, 7, None),
    (5, 29, None),
    (6, 31, None),
    (7, 26, Some("SPI0 CE1")),
    (8, 24, Some("SPI0 CE0")),
    (9, 21, Some("SPI0 MISO")),
    (10, 19, Some("SPI0 MOSI")),
    (11, 23, Some("SPI0 SCLK")),
    (12, 32, Some("PWM0")),
    (13, 33, Some("PWM1")),
    (14, 8, Some("UART TX")),
    (15, 10, Some("UART RX")),
    (16, 36, None),
    (17, 11, None),
    (18, 12, Some("PWM0")),
    (19, 35, Some("PWM1")),
    (20, 38, None),
    (21, 40, None),
    (22, 15, None),
    (23, 16, None),
    (24, 18, None),
    (25, 22, None),
    (26, 37, None),
    (27, 13, None),
];

/// A Raspberry Pi model with the 40-pin header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Board {
    /// Raspberry Pi 3.
    Pi3,
    /// Raspberry Pi 4.
    Pi4,
    /// Raspberry Pi 5.
    Pi5,
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Board::Pi3 => "Raspberry Pi 3",
            Board::Pi4 => "Raspberry Pi 4",
            Board::Pi5 => "Raspberry Pi 5",
        })
    }
}

impl Board {
    fn entry(pin: u32) -> Option<&'static (u32, u32, Option<&'static str>)> {
        HEADER.iter().find(|(bcm, _, _)| *bcm == pin)
    }

    /// Ok when BCM GPIO `pin` is on this board's header; otherwise a sentence saying it is not.
    pub fn check_pin(self, pin: u32) -> Result<(), String> {
        match Board::entry(pin) {
            Some(_) => Ok(()),
            None => Err(format!("GPIO {pin} is not on the {self} header (BCM 2 to 27)")),
        }
    }

    /// The header pin (1 to 40) carrying BCM GPIO `pin`.
    pub fn header_pin(self, pin: u32) -> Option<u32> {
        Board::entry(pin).map(|(_, header, _)| *header)
    }

    /// The special function of BCM GPIO `pin` (I2C, SPI, UART, PWM), if any.
    pub fn function(self, pin: u32) -> Option<&'static str> {
        Board::entry(pin).and_then(|(_, _, function)| *function)
    }

    /// The hardware PWM channel behind BCM GPIO `pin` (GPIO 12, 13, 18, 19), as rppal numbers it:
    /// the Pi 3 and 4 have two channels (12 and 18 share PWM0, 13 and 19 share PWM1), the Pi 5
    /// has four (12, 13, 18, 19 are PWM0 to PWM3).
    pub fn pwm_channel(self, pin: u32) -> Option<u8> {
        match (self, pin) {
            (_, 12) => Some(0),
            (_, 13) => Some(1),
            (Board::Pi3 | Board::Pi4, 18) => Some(0),
            (Board::Pi3 | Board::Pi4, 19) => Some(1),
            (Board::Pi5, 18) => Some(2),
            (Board::Pi5, 19) => Some(3),
            _ => None,
        }
    }

    /// Ok when BCM GPIO `pin` can output hardware PWM; otherwise a sentence naming the pins that can.
    pub fn check_pwm_pin(self, pin: u32) -> Result<(), String> {
        self.check_pin(pin)?;
        match self.pwm_channel(pin) {
            Some(_) => Ok(()),
            None => Err(format!(
                "GPIO {pin} has no hardware PWM on the {self}; use GPIO 12, 13, 18 or 19"
            )),
        }
    }

    /// A warning when BCM GPIO `pin` is one of the UART lines (GPIO 14 TX, 15 RX) that the
    /// terminal's console, or the Pi's own login console, may be using.
    pub fn uart_warning(self, pin: u32, user: &str) -> Option<String> {
        let function = self.function(pin).filter(|f| f.starts_with("UART"))?;
        Some(format!(
            "{user} uses GPIO {pin}, the {function} line (header pin {}) that a serial console on \
             the Pi's UART needs; read the console through a USB adapter or move {user} to another pin",
            self.header_pin(pin).unwrap_or(0)
        ))
    }
}

/// Ok when no pin is used twice; otherwise a sentence naming the pin and both of its users.
/// `uses` lists (what, pin), e.g. `("power relay", 17)`.
pub fn check_conflicts(uses: &[(String, u32)]) -> Result<(), String> {
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for (what, pin) in uses {
        if let Some(first) = seen.insert(*pin, what) {
            return Err(format!("GPIO {pin} is used twice: by {first} and by {what}"));
        }
    }
    Ok(())
}
