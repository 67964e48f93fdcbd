//! The checks a configuration passes beyond its syntax: backends that belong together, pins that
//! exist on the board and are used once, serial settings, and the devices to look for when the
//! rig starts.

use std::path::{Path, PathBuf};

use crate::error::{Result, RigError};
use crate::gpio::{check_conflicts, Board};

use super::locate::Layout;
use super::{
    CardFeederConfig, ConsoleConfig, Device, GpioConfig, ImpairmentConfig, LinkConfig, PowerConfig, RigConfig,
};

/// Serial devices wired to the Raspberry Pi's own UART on GPIO 14 and 15.
const PI_UART_DEVICES: [&str; 4] = ["/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0", "/dev/serial1"];

/// Runs every check over `config`, filling in the devices to look for.
pub(super) fn check(mut config: RigConfig, layout: &Layout<'_>) -> Result<RigConfig> {
    let path = config.path.clone();
    let fail = |table: &str, key: &str, problem: String| -> RigError {
        let at = layout.key(table, key).unwrap_or(0);
        layout.error(&path, at, problem)
    };
    backends_belong_together(&config, &fail)?;
    feeder_settings(&config, &fail)?;
    if let ConsoleConfig::Serial(settings) = &config.console {
        if let Some(problem) = settings.validate().first() {
            return Err(fail("console", problem.field, problem.sentence.clone()));
        }
    }
    pins(&config, layout, &path)?;
    config.devices = devices(&config, &fail);
    Ok(config)
}

/// The simulator's backends go with the simulated terminal, the hardware ones with a real one.
fn backends_belong_together(config: &RigConfig, fail: &dyn Fn(&str, &str, String) -> RigError) -> Result<()> {
    let simulated = config.simulated();
    if simulated && config.terminal.is_none() {
        return Err(fail(
            "power",
            "backend",
            "the sim power backend starts the simulated terminal: add a [terminal] table with program and args"
                .into(),
        ));
    }
    if !simulated && config.terminal.is_some() {
        return Err(fail(
            "terminal",
            "program",
            "[terminal] starts a simulated terminal, but power goes through a relay to a real one: remove [terminal]"
                .into(),
        ));
    }
    let sim_only = [
        (
            "console",
            matches!(config.console, ConsoleConfig::SimPty {}),
            "sim-pty",
        ),
        (
            "card_feeder",
            config.card_feeder == CardFeederConfig::Sim {},
            "sim",
        ),
        (
            "link",
            matches!(
                config.link,
                LinkConfig::Auto {} | LinkConfig::Netns {} | LinkConfig::Proxy {}
            ),
            "auto, netns and proxy",
        ),
    ];
    for (table, is_sim, names) in sim_only {
        if is_sim && !simulated {
            return Err(fail(
                table,
                "backend",
                format!(
                    "the {names} {table} backend works with the simulated terminal only; this rig powers a real \
                     terminal through a relay (see fixtures/rigs/pi-example.toml)"
                ),
            ));
        }
    }
    if simulated {
        let hardware = [
            ("console", !matches!(config.console, ConsoleConfig::SimPty {})),
            ("card_feeder", config.card_feeder != CardFeederConfig::Sim {}),
            ("link", matches!(config.link, LinkConfig::Netlink(_))),
            ("impairment", config.impairment.is_some()),
            ("inputs", !config.inputs.is_empty()),
        ];
        if let Some((table, _)) = hardware.iter().find(|(_, used)| *used) {
            return Err(fail(
                table,
                "backend",
                format!(
                    "[{table}] drives hardware, but the terminal is the simulated one (power backend \"sim\"); \
                     the simulated rig's link gives delay, drop and blackhole by itself"
                ),
            ));
        }
    }
    if let Some(ImpairmentConfig::Nftables(nftables)) = &config.impairment {
        if let LinkConfig::Netlink(link) = &config.link {
            if link.interface != nftables.interface {
                return Err(fail(
                    "impairment",
                    "interface",
                    format!(
                        "nftables impairs {:?} but the terminal's link is {:?}: name the same interface",
                        nftables.interface, link.interface
                    ),
                ));
            }
        }
    }
    let uses_gpio = matches!(config.power, PowerConfig::Relay(_))
        || matches!(
            config.card_feeder,
            CardFeederConfig::Solenoid(_) | CardFeederConfig::Servo(_)
        )
        || !config.inputs.is_empty();
    match (&config.gpio, uses_gpio) {
        (None, true) => Err(fail(
            "power",
            "backend",
            "relays, solenoids, servos and inputs need GPIO: add a [gpio] table with driver = \"rppal\" (Raspberry Pi) \
             or driver = \"cdev\" and chip = \"/dev/gpiochip0\" (any Linux board)"
                .into(),
        )),
        (Some(GpioConfig::Rppal {}), _) if config.board.is_none() => Err(fail(
            "gpio",
            "driver",
            "the rppal driver needs the board: add board = \"pi3\", \"pi4\" or \"pi5\" to [rig]".into(),
        )),
        _ => Ok(()),
    }
}

/// Each card feeder's own settings.
fn feeder_settings(config: &RigConfig, fail: &dyn Fn(&str, &str, String) -> RigError) -> Result<()> {
    let checked = match &config.card_feeder {
        CardFeederConfig::Solenoid(solenoid) => solenoid.validate(),
        CardFeederConfig::Servo(servo) => servo.validate(),
        CardFeederConfig::Sim {} => Ok(()),
    };
    checked.map_err(|problem| {
        let key = problem
            .split_whitespace()
            .next()
            .unwrap_or("backend")
            .trim_matches(['(', ')', ':']);
        let (table, key) = match key.split_once('.') {
            Some((sub, key)) => (format!("card_feeder.{sub}"), key.to_string()),
            None => ("card_feeder".to_string(), key.to_string()),
        };
        fail(&table, &key, problem)
    })?;
    let card = match &config.card_feeder {
        CardFeederConfig::Solenoid(solenoid) => Some(&solenoid.card),
        CardFeederConfig::Servo(servo) => Some(&servo.card),
        CardFeederConfig::Sim {} => None,
    };
    if let Some(card) = card {
        if !config.cards.join(format!("{card}.toml")).is_file() {
            return Err(fail(
                "card_feeder",
                "card",
                format!(
                    "no card profile {card:?} in {} (the card loaded in the mechanism must have one)",
                    config.cards.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Every pin on the board's header, used once, PWM where a servo needs it, and clear of the UART
/// the console reads.
fn pins(config: &RigConfig, layout: &Layout<'_>, path: &Path) -> Result<()> {
    let mut uses: Vec<(String, u32, &str)> = Vec::new();
    if let PowerConfig::Relay(relay) = &config.power {
        uses.extend(relay.pins().into_iter().map(|(what, pin)| (what, pin, "power")));
    }
    match &config.card_feeder {
        CardFeederConfig::Solenoid(solenoid) => {
            uses.extend(
                solenoid
                    .pins()
                    .into_iter()
                    .map(|(what, pin)| (what, pin, "card_feeder")),
            );
        }
        CardFeederConfig::Servo(servo) => {
            uses.extend(
                servo
                    .pins()
                    .into_iter()
                    .map(|(what, pin)| (what, pin, "card_feeder")),
            );
        }
        CardFeederConfig::Sim {} => {}
    }
    for input in &config.inputs {
        uses.extend(input.pins().into_iter().map(|(what, pin)| (what, pin, "inputs")));
    }
    let at_pin = |table: &str, pin: u32, problem: String| {
        let at = layout
            .pin(table, pin)
            .or_else(|| layout.header(table))
            .unwrap_or(0);
        layout.error(path, at, problem)
    };
    if let Some(board) = config.board {
        for (what, pin, table) in &uses {
            board
                .check_pin(*pin)
                .map_err(|problem| at_pin(table, *pin, format!("{what}: {problem}")))?;
        }
    }
    let named: Vec<(String, u32)> = uses.iter().map(|(what, pin, _)| (what.clone(), *pin)).collect();
    if let Err(problem) = check_conflicts(&named) {
        let (_, pin, table) = uses
            .iter()
            .rev()
            .find(|(_, pin, _)| uses.iter().filter(|(_, p, _)| p == pin).count() > 1)
            .expect("a conflict names a pin used twice");
        return Err(at_pin(table, *pin, problem));
    }
    if let CardFeederConfig::Servo(servo) = &config.card_feeder {
        servo_pwm(config, servo.pin, config.board)
            .map_err(|problem| at_pin("card_feeder", servo.pin, problem))?;
    }
    if let ConsoleConfig::Serial(settings) = &config.console {
        if PI_UART_DEVICES.contains(&settings.device.as_str()) {
            if let Some((what, pin, table)) = uses.iter().find(|(_, pin, _)| matches!(pin, 14 | 15)) {
                let problem = format!(
                    "{what} is on GPIO {pin}, which carries the Pi's UART that the console reads ({}): move it \
                     to a free pin",
                    settings.device
                );
                return Err(at_pin(table, *pin, problem));
            }
        }
    }
    Ok(())
}

/// A servo needs a PWM channel on its pin: a hardware PWM pin on a Pi, a sysfs PWM channel
/// listed in `[gpio]` on other boards.
fn servo_pwm(config: &RigConfig, pin: u32, board: Option<Board>) -> std::result::Result<(), String> {
    match &config.gpio {
        Some(GpioConfig::Rppal {}) => match board {
            Some(board) => board.check_pwm_pin(pin).map_err(|p| format!("the servo: {p}")),
            None => Ok(()),
        },
        Some(GpioConfig::Cdev(cdev)) if !cdev.pwm.iter().any(|p| p.pin == pin) => Err(format!(
            "the servo is on line {pin}, but [gpio] lists no sysfs PWM channel for it: add \
             [[gpio.pwm]] with pin = {pin}, pwmchip and channel"
        )),
        _ => Ok(()),
    }
}

/// The devices the configuration names, each with the error to give when it is missing.
fn devices(config: &RigConfig, fail: &dyn Fn(&str, &str, String) -> RigError) -> Vec<Device> {
    let mut devices = Vec::new();
    if let ConsoleConfig::Serial(settings) = &config.console {
        devices.push(Device {
            what: "serial console",
            path: PathBuf::from(&settings.device),
            missing: fail(
                "console",
                "device",
                format!(
                    "no serial device {}: is the USB adapter plugged in? (`ls /dev/serial/by-id/` lists them)",
                    settings.device
                ),
            )
            .to_string(),
        });
    }
    if let Some(GpioConfig::Cdev(cdev)) = &config.gpio {
        devices.push(Device {
            what: "GPIO chip",
            path: cdev.chip.clone(),
            missing: fail(
                "gpio",
                "chip",
                format!(
                    "no GPIO chip {}: `ls /dev/gpiochip*` lists this board's chips",
                    cdev.chip.display()
                ),
            )
            .to_string(),
        });
    }
    let mut interface = |table: &str, name: &str, namespace: &Option<String>| {
        // An interface inside another namespace cannot be seen from here; the backend checks it.
        let path = Path::new("/sys/class/net").join(name);
        if namespace.is_none() && !devices.iter().any(|d: &Device| d.path == path) {
            devices.push(Device {
                what: "network interface",
                path,
                missing: fail(
                    table,
                    "interface",
                    format!("no network interface {name:?} here: `ip link` lists them (a USB Ethernet adapter unplugged?)"),
                )
                .to_string(),
            });
        }
    };
    if let LinkConfig::Netlink(link) = &config.link {
        interface("link", &link.interface, &link.namespace);
    }
    if let Some(ImpairmentConfig::Nftables(nftables)) = &config.impairment {
        interface("impairment", &nftables.interface, &nftables.namespace);
    }
    devices
}
