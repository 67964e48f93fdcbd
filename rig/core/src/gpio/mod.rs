//! GPIO hardware backends: lines (output, input, PWM) behind small traits, three drivers for
//! them (Raspberry Pi through rppal, any Linux board through the GPIO character device and sysfs
//! PWM, and [`FakeGpio`] for tests), the capabilities built on lines (a relay, a solenoid and a
//! servo card feeder, an input watcher) and the Raspberry Pi header's pin table.

mod board;
mod cdev;
mod debounce;
mod fake;
mod feeder;
mod lines;
mod relay;
mod rppal;
mod servo;
mod solenoid;
mod sysfs_pwm;
mod watcher;

pub use board::{check_conflicts, Board};
pub use cdev::{CdevConfig, CdevGpio};
pub use debounce::{wait_for, Debouncer, Edge, Wait, POLL_INTERVAL};
pub use fake::{Change, FakeGpio, PwmChange};
pub use feeder::CardSensorConfig;
pub use lines::{Active, GpioDriver, Input, InputLine, Level, Output, OutputLine, PwmOutput};
pub use relay::{GpioRelay, GpioRelayConfig, ReadbackConfig};
pub use rppal::RppalGpio;
pub use servo::{ServoFeeder, ServoFeederConfig, SERVO_RANGE_DEG};
pub use solenoid::{SolenoidFeeder, SolenoidFeederConfig};
pub use sysfs_pwm::{SysfsPwm, SysfsPwmConfig, SYSFS_PWM_ROOT};
pub use watcher::{Edges, InputWatcher, WatchedInputConfig};
