//! GPIO capabilities through their traits against FakeGpio, the Pi header table, sysfs PWM on a
//! directory laid out like /sys/class/pwm, and the real backends' error path on a machine
//! without a Pi or a GPIO chip.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use posrig_core::capability::{CardFeeder, PowerState, PowerSwitch};
use posrig_core::gpio::{
    check_conflicts, Active, Board, CardSensorConfig, CdevConfig, CdevGpio, Edges, FakeGpio, GpioDriver,
    GpioRelay, GpioRelayConfig, InputWatcher, Level, PwmOutput, ReadbackConfig, RppalGpio, ServoFeeder,
    ServoFeederConfig, SolenoidFeeder, SolenoidFeederConfig, SysfsPwm, WatchedInputConfig,
};
use posrig_core::timeline::{Source, Timeline};

const PUSH: u32 = 17;
const PULL: u32 = 27;
const SENSOR: u32 = 23;
const RELAY: u32 = 5;
const READBACK: u32 = 24;
const SERVO: u32 = 18;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sensor(debounce_ms: u64, timeout_ms: u64) -> CardSensorConfig {
    CardSensorConfig {
        pin: SENSOR,
        active: Active::High,
        debounce_ms,
        timeout_ms,
    }
}

fn solenoid(pulse_ms: u64, sensor: CardSensorConfig, retries: u32) -> SolenoidFeederConfig {
    SolenoidFeederConfig {
        card: "unionpay-debit".into(),
        push_pin: PUSH,
        push_active: Active::High,
        pulse_ms,
        hold_ms: 0,
        pull_pin: None,
        pull_active: Active::High,
        sensor,
        retries,
    }
}

fn relay(active: Active, readback: Option<ReadbackConfig>) -> GpioRelayConfig {
    GpioRelayConfig {
        pin: RELAY,
        active,
        settle_ms: 10,
        readback,
    }
}

fn servo(sensor: Option<CardSensorConfig>) -> ServoFeederConfig {
    ServoFeederConfig {
        card: "visa-credit".into(),
        pin: SERVO,
        inserted_angle_deg: 95.0,
        removed_angle_deg: 10.0,
        travel_ms: 20,
        min_pulse_us: 500,
        max_pulse_us: 2500,
        period_ms: 20,
        sensor,
        retries: 1,
    }
}

#[test]
fn a_bouncing_sensor_confirms_the_card_only_once_stable_for_debounce_ms() {
    let gpio = FakeGpio::new();
    let feeder = SolenoidFeeder::new(&gpio, &solenoid(20, sensor(15, 500), 0)).unwrap();
    // Bounces: each present spell is shorter than the 15 ms debounce; stable from 60 ms on.
    gpio.script_input(
        SENSOR,
        Level::Low,
        &[
            (ms(25), Level::High),
            (ms(30), Level::Low),
            (ms(40), Level::High),
            (ms(48), Level::Low),
            (ms(60), Level::High),
        ],
    );
    let start = Instant::now();
    feeder.insert("unionpay-debit").unwrap();
    let took = start.elapsed();
    assert!(
        took >= ms(75),
        "confirmed after {took:?}, before the sensor was stable for 15 ms"
    );
    assert_eq!(feeder.present().unwrap().as_deref(), Some("unionpay-debit"));
}

#[test]
fn the_push_pulse_lasts_pulse_ms_and_the_solenoid_is_released() {
    let gpio = FakeGpio::new();
    let feeder = SolenoidFeeder::new(&gpio, &solenoid(30, sensor(2, 300), 0)).unwrap();
    assert_eq!(gpio.level(PUSH), Some(Level::Low), "opened released");
    gpio.script_input(SENSOR, Level::Low, &[(ms(40), Level::High)]);
    feeder.insert("unionpay-debit").unwrap();
    let widths = gpio.pulse_widths(PUSH, Level::High);
    assert_eq!(widths.len(), 1, "one push: {widths:?}");
    assert!(widths[0] >= ms(30), "pulse {:?} shorter than pulse_ms", widths[0]);
    assert!(
        widths[0] < ms(90),
        "pulse {:?} far longer than pulse_ms",
        widths[0]
    );
    assert_eq!(gpio.level(PUSH), Some(Level::Low));
}

#[test]
fn hold_ms_keeps_pushing_after_the_sensor_confirms() {
    let gpio = FakeGpio::new();
    let config = SolenoidFeederConfig {
        hold_ms: 50,
        ..solenoid(20, sensor(0, 300), 0)
    };
    let feeder = SolenoidFeeder::new(&gpio, &config).unwrap();
    gpio.follow(SENSOR, PUSH, ms(5));
    feeder.insert("unionpay-debit").unwrap();
    let widths = gpio.pulse_widths(PUSH, Level::High);
    assert_eq!(widths.len(), 1, "{widths:?}");
    assert!(
        widths[0] >= ms(70),
        "held {:?}, less than pulse_ms + hold_ms",
        widths[0]
    );
    assert_eq!(gpio.level(PUSH), Some(Level::Low), "released after the hold");
}

#[test]
fn a_sensor_that_never_confirms_fails_naming_the_step_after_every_retry() {
    let gpio = FakeGpio::new();
    let feeder = SolenoidFeeder::new(&gpio, &solenoid(10, sensor(5, 60), 2)).unwrap();
    gpio.set_input(SENSOR, Level::Low);
    let err = feeder.insert("unionpay-debit").unwrap_err().to_string();
    assert_eq!(
        err,
        "card feeder (solenoid): insert unionpay-debit failed: pushed the card 3 times, the card-present \
         sensor on GPIO23 never read 'present' (high) within 60 ms; it last read 'absent' (low)"
    );
    assert_eq!(gpio.pulse_widths(PUSH, Level::High).len(), 3);
    assert_eq!(gpio.level(PUSH), Some(Level::Low), "left released");
    assert_eq!(feeder.present().unwrap(), None);
}

#[test]
fn the_pull_solenoid_removes_the_card_and_an_active_low_sensor_reads_present_when_low() {
    let gpio = FakeGpio::new();
    let config = SolenoidFeederConfig {
        pull_pin: Some(PULL),
        sensor: CardSensorConfig {
            active: Active::Low,
            ..sensor(2, 200)
        },
        ..solenoid(10, sensor(2, 200), 0)
    };
    let feeder = SolenoidFeeder::new(&gpio, &config).unwrap();
    gpio.set_input(SENSOR, Level::Low);
    assert_eq!(feeder.present().unwrap().as_deref(), Some("unionpay-debit"));
    gpio.script_input(SENSOR, Level::Low, &[(ms(15), Level::High)]);
    feeder.remove().unwrap();
    assert_eq!(gpio.pulse_widths(PULL, Level::High).len(), 1);
    assert!(gpio.pulse_widths(PUSH, Level::High).is_empty());
    assert_eq!(feeder.present().unwrap(), None);
}

#[test]
fn a_feeder_inserts_only_the_card_loaded_in_it() {
    let gpio = FakeGpio::new();
    let feeder = SolenoidFeeder::new(&gpio, &solenoid(10, sensor(2, 100), 0)).unwrap();
    let err = feeder.insert("visa-credit").unwrap_err().to_string();
    assert!(
        err.contains("holds the card \"unionpay-debit\" and cannot insert \"visa-credit\""),
        "{err}"
    );
    assert!(gpio.pulse_widths(PUSH, Level::High).is_empty(), "nothing moved");
}

#[test]
fn a_feeder_config_is_checked_when_it_is_built() {
    let gpio = FakeGpio::new();
    let err = SolenoidFeeder::new(&gpio, &solenoid(10, sensor(50, 50), 0))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("sensor.timeout_ms (50) must be longer than sensor.debounce_ms (50)"),
        "{err}"
    );
    assert!(gpio.claimed().is_empty(), "no line claimed by a rejected config");
    let toml_err = toml::from_str::<SolenoidFeederConfig>(
        "card = \"c\"\npush_pin = 17\npulse_ms = 10\npuls_ms = 3\n[sensor]\npin = 23\ntimeout_ms = 100\n",
    )
    .unwrap_err()
    .to_string();
    assert!(toml_err.contains("unknown field `puls_ms`"), "{toml_err}");
}

#[test]
fn the_relay_switches_and_its_read_back_confirms() {
    let gpio = FakeGpio::new();
    let readback = ReadbackConfig {
        pin: READBACK,
        active: Active::High,
        timeout_ms: 200,
    };
    let power = GpioRelay::new(&gpio, &relay(Active::High, Some(readback))).unwrap();
    gpio.follow(READBACK, RELAY, ms(15));
    assert_eq!(gpio.level(RELAY), Some(Level::High), "powered from the start");
    power.off().unwrap();
    assert_eq!(gpio.level(RELAY), Some(Level::Low));
    assert_eq!(power.state().unwrap(), PowerState::Off);
    power.on().unwrap();
    assert_eq!(power.state().unwrap(), PowerState::On);
}

#[test]
fn a_read_back_that_disagrees_is_an_error_and_power_is_restored() {
    let gpio = FakeGpio::new();
    let readback = ReadbackConfig {
        pin: READBACK,
        active: Active::High,
        timeout_ms: 50,
    };
    let power = GpioRelay::new(&gpio, &relay(Active::High, Some(readback))).unwrap();
    gpio.set_input(READBACK, Level::High);
    let err = power.off().unwrap_err().to_string();
    assert_eq!(
        err,
        "power (gpio relay): off failed: switched GPIO5 off, but the read-back on GPIO24 still read \
         'powered' (high) 60 ms later; expected 'unpowered' (low); check the relay and its wiring; \
         power restored"
    );
    assert_eq!(gpio.level(RELAY), Some(Level::High), "left powered");
    assert_eq!(
        power.state().unwrap(),
        PowerState::On,
        "state() reads the read-back"
    );
}

#[test]
fn an_active_low_relay_drives_low_to_power_and_waits_settle_ms() {
    let gpio = FakeGpio::new();
    let power = GpioRelay::new(&gpio, &relay(Active::Low, None)).unwrap();
    assert_eq!(gpio.level(RELAY), Some(Level::Low), "powered is low");
    let start = Instant::now();
    power.off().unwrap();
    assert!(start.elapsed() >= ms(10), "returned before settle_ms");
    assert_eq!(gpio.level(RELAY), Some(Level::High));
    assert_eq!(power.state().unwrap(), PowerState::Off);
    power.on().unwrap();
    assert_eq!(gpio.level(RELAY), Some(Level::Low));
    assert_eq!(
        relay(Active::Low, None).pins(),
        vec![("the power relay".to_string(), RELAY)]
    );
}

#[test]
fn servo_angles_map_linearly_onto_pulse_widths() {
    let config = servo(None);
    assert_eq!(config.pulse_for(0.0), Duration::from_micros(500));
    assert_eq!(config.pulse_for(90.0), Duration::from_micros(1500));
    assert_eq!(config.pulse_for(180.0), Duration::from_micros(2500));
    assert_eq!(config.pulse_for(95.0), Duration::from_nanos(1_555_556));
    let gpio = FakeGpio::new();
    let feeder = ServoFeeder::new(&gpio, &config).unwrap();
    let period = ms(20);
    let opened = gpio.pwm_changes(SERVO);
    assert_eq!(opened.len(), 1);
    assert_eq!(
        opened[0].setting,
        Some((period, config.pulse_for(10.0))),
        "opened at the removed angle"
    );
    feeder.insert("visa-credit").unwrap();
    assert_eq!(feeder.present().unwrap().as_deref(), Some("visa-credit"));
    feeder.remove().unwrap();
    let settings: Vec<_> = gpio.pwm_changes(SERVO).iter().map(|c| c.setting).collect();
    assert_eq!(
        settings,
        vec![
            Some((period, config.pulse_for(10.0))),
            Some((period, config.pulse_for(95.0))),
            Some((period, config.pulse_for(10.0))),
        ]
    );
    assert_eq!(feeder.present().unwrap(), None);
}

#[test]
fn a_servo_whose_sensor_never_confirms_swings_back_and_says_so() {
    let gpio = FakeGpio::new();
    let config = servo(Some(sensor(2, 40)));
    let feeder = ServoFeeder::new(&gpio, &config).unwrap();
    gpio.set_input(SENSOR, Level::Low);
    let err = feeder.insert("visa-credit").unwrap_err().to_string();
    assert!(
        err.contains(
            "moved the servo on GPIO18 to 95° 2 times, the card-present sensor on GPIO23 never read 'present'"
        ),
        "{err}"
    );
    let last = gpio.pwm_changes(SERVO).last().unwrap().setting;
    assert_eq!(
        last,
        Some((ms(20), config.pulse_for(10.0))),
        "left at the removed angle"
    );
}

#[test]
fn servo_config_rejects_an_angle_out_of_range() {
    let config = ServoFeederConfig {
        inserted_angle_deg: 200.0,
        ..servo(None)
    };
    assert_eq!(
        config.validate().unwrap_err(),
        "inserted_angle_deg is 200; it must be between 0 and 180"
    );
    let gpio = FakeGpio::new();
    assert!(ServoFeeder::new(&gpio, &config).is_err());
    assert!(gpio.pwm_changes(SERVO).is_empty(), "nothing driven");
}

fn input_entries(timeline: &Timeline, name: &str) -> Vec<String> {
    timeline
        .entries()
        .into_iter()
        .filter(|e| e.source == Source::Input && e.name == name)
        .map(|e| e.detail)
        .collect()
}

#[test]
fn the_input_watcher_puts_debounced_edges_on_the_timeline() {
    let gpio = FakeGpio::new();
    let timeline = Timeline::new();
    let door = WatchedInputConfig {
        name: "door".into(),
        pin: 6,
        active: Active::Low,
        debounce_ms: 10,
        edges: Edges::Both,
    };
    let button = WatchedInputConfig {
        name: "button".into(),
        pin: 26,
        active: Active::High,
        debounce_ms: 0,
        edges: Edges::Rising,
    };
    // The door closes (active low) with a 3 ms bounce, then opens again at 80 ms.
    gpio.script_input(
        6,
        Level::High,
        &[
            (ms(20), Level::Low),
            (ms(23), Level::High),
            (ms(26), Level::Low),
            (ms(80), Level::High),
        ],
    );
    gpio.script_input(26, Level::Low, &[(ms(30), Level::High), (ms(60), Level::Low)]);
    let watcher = InputWatcher::start(&gpio, &[door, button], timeline.clone()).unwrap();
    std::thread::sleep(ms(150));
    drop(watcher);
    assert!(
        gpio.claimed().is_empty(),
        "the watcher released its inputs when dropped"
    );
    assert_eq!(input_entries(&timeline, "input door"), ["rising", "falling"]);
    assert_eq!(
        input_entries(&timeline, "input button"),
        ["rising"],
        "falling edges not asked for"
    );
    let rising = timeline
        .entries()
        .into_iter()
        .find(|e| e.name == "input door")
        .unwrap();
    assert_eq!(rising.fields["pin"], "GPIO6");
    assert_eq!(rising.fields["level"], "low");
    let confirmed: u64 = rising.fields["confirmed_ns"].parse().unwrap();
    assert!(
        confirmed - rising.t_ns >= 10_000_000,
        "reported before debounce_ms"
    );
    let settled = timeline.len();
    std::thread::sleep(ms(20));
    assert_eq!(
        timeline.len(),
        settled,
        "nothing recorded after the watcher was dropped"
    );
}

#[test]
fn the_board_knows_its_header() {
    assert_eq!(
        Board::Pi4.check_pin(31).unwrap_err(),
        "GPIO 31 is not on the Raspberry Pi 4 header (BCM 2 to 27)"
    );
    assert!(Board::Pi4.check_pin(1).is_err());
    assert!((2..=27).all(|pin| Board::Pi3.check_pin(pin).is_ok()));
    assert_eq!(Board::Pi5.header_pin(17), Some(11));
    assert_eq!(Board::Pi5.header_pin(14), Some(8));
    assert_eq!(Board::Pi3.function(2), Some("I2C1 SDA"));
    assert_eq!(Board::Pi4.pwm_channel(18), Some(0));
    assert_eq!(Board::Pi5.pwm_channel(18), Some(2));
    assert_eq!(Board::Pi4.pwm_channel(17), None);
    assert!(Board::Pi4.check_pwm_pin(19).is_ok());
    assert_eq!(
        Board::Pi4.check_pwm_pin(17).unwrap_err(),
        "GPIO 17 has no hardware PWM on the Raspberry Pi 4; use GPIO 12, 13, 18 or 19"
    );
    let warning = Board::Pi4.uart_warning(14, "the power relay").unwrap();
    assert!(
        warning.contains("the power relay uses GPIO 14, the UART TX line (header pin 8)"),
        "{warning}"
    );
    assert_eq!(Board::Pi4.uart_warning(17, "the power relay"), None);
    assert_eq!(
        toml::from_str::<Wrapper>("board = \"pi5\"").unwrap().board,
        Board::Pi5
    );
}

#[derive(serde::Deserialize)]
struct Wrapper {
    board: Board,
}

#[test]
fn a_pin_used_twice_names_both_users() {
    let mut uses = relay(Active::High, None).pins();
    uses.extend(solenoid(10, sensor(2, 100), 0).pins());
    assert_eq!(check_conflicts(&uses), Ok(()));
    uses.push(("input door".to_string(), SENSOR));
    assert_eq!(
        check_conflicts(&uses).unwrap_err(),
        "GPIO 23 is used twice: by the card feeder's sensor and by input door"
    );
}

fn on_a_raspberry_pi() -> bool {
    std::fs::read_to_string("/proc/device-tree/model").is_ok_and(|m| m.contains("Raspberry Pi"))
}

#[test]
fn the_rppal_backend_says_there_is_no_pi_here() {
    if on_a_raspberry_pi() {
        eprintln!("skipped: this is a Raspberry Pi, where rppal opens");
        return;
    }
    let err = RppalGpio::new(Board::Pi4).err().unwrap().to_string();
    assert!(
        err.starts_with("gpio (rppal): open failed: no Raspberry Pi GPIO here: "),
        "{err}"
    );
}

#[test]
fn the_cdev_backend_says_there_is_no_gpio_chip() {
    let not_a_chip = CdevConfig {
        chip: PathBuf::from("/dev/null"),
        pwm: vec![],
    };
    let err = CdevGpio::open(&not_a_chip).err().unwrap().to_string();
    assert!(err.contains("no GPIO character device here: /dev/null"), "{err}");
    if Path::new("/dev/gpiochip0").exists() {
        eprintln!("skipped the missing-chip half: /dev/gpiochip0 exists here");
        return;
    }
    let missing = CdevConfig {
        chip: PathBuf::from("/dev/gpiochip0"),
        pwm: vec![],
    };
    let err = CdevGpio::open(&missing).err().unwrap().to_string();
    assert!(
        err.contains("no GPIO character device here: /dev/gpiochip0"),
        "{err}"
    );
}

/// A directory laid out like /sys/class/pwm with one chip.
fn fake_sysfs(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("posrig-pwm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("pwmchip0")).unwrap();
    std::fs::write(root.join("pwmchip0/export"), "").unwrap();
    root
}

#[test]
fn sysfs_pwm_writes_period_pulse_and_enable_in_nanoseconds() {
    let root = fake_sysfs("write");
    let channel = root.join("pwmchip0/pwm1");
    std::fs::create_dir_all(&channel).unwrap();
    for (file, value) in [("period", "0"), ("duty_cycle", "0"), ("enable", "0")] {
        std::fs::write(channel.join(file), value).unwrap();
    }
    let read = |file: &str| std::fs::read_to_string(channel.join(file)).unwrap();
    {
        let mut pwm = SysfsPwm::open(&root, 0, 1).unwrap();
        pwm.set(ms(20), Duration::from_micros(1500)).unwrap();
        assert_eq!(
            (read("period"), read("duty_cycle"), read("enable")),
            ("20000000".into(), "1500000".into(), "1".into())
        );
        pwm.disable().unwrap();
        assert_eq!(read("enable"), "0");
        pwm.set(ms(10), Duration::from_micros(800)).unwrap();
        assert_eq!(read("period"), "10000000");
    }
    assert_eq!(read("enable"), "0", "disabled when dropped");
    let missing_chip = SysfsPwm::open(&root, 3, 0).unwrap_err().to_string();
    assert!(missing_chip.contains("no PWM chip"), "{missing_chip}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn sysfs_pwm_exports_the_channel_and_says_when_it_never_appears() {
    let root = fake_sysfs("export");
    let err = SysfsPwm::open(&root, 0, 2).unwrap_err().to_string();
    assert_eq!(
        std::fs::read_to_string(root.join("pwmchip0/export")).unwrap(),
        "2"
    );
    assert!(err.contains("did not appear after exporting channel 2"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_fake_driver_is_usable_as_a_trait_object() {
    let gpio = FakeGpio::new();
    let driver: &dyn GpioDriver = &gpio;
    assert_eq!(driver.name(), "fake");
    let mut line = driver.output(4, "lamp", Level::Low).unwrap();
    line.write(Level::High).unwrap();
    assert_eq!(gpio.claimed(), vec![(4, "lamp".to_string())]);
    assert_eq!(gpio.level(4), Some(Level::High));
}
