use super::*;

fn fixture(name: &str) -> (PathBuf, String) {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/rigs")).join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// The error of `name` with the first `find` replaced by `replace`.
fn error_of_in(name: &str, find: &str, replace: &str) -> String {
    let (path, text) = fixture(name);
    assert!(text.contains(find), "{find}");
    RigConfig::parse(&text.replacen(find, replace, 1), &path)
        .unwrap_err()
        .to_string()
}

fn error_of(find: &str, replace: &str) -> String {
    error_of_in("sim.toml", find, replace)
}

/// The line of `pi-example.toml` (after `find` → `replace`) holding `marker`.
fn pi_line(find: &str, replace: &str, marker: &str) -> usize {
    let (_, text) = fixture("pi-example.toml");
    let changed = text.replacen(find, replace, 1);
    let exact = changed.lines().position(|l| l.trim() == marker);
    exact
        .or_else(|| changed.lines().position(|l| l.contains(marker)))
        .unwrap()
        + 1
}

/// Asserts the error of the changed `pi-example.toml` names `file:line: field` and says `words`.
fn pi_error(find: &str, replace: &str, marker: &str, field: &str, words: &[&str]) {
    let message = error_of_in("pi-example.toml", find, replace);
    let line = pi_line(find, replace, marker);
    assert!(
        message.contains(&format!("pi-example.toml:{line}: {field}:")),
        "expected line {line} and {field} in: {message}"
    );
    for word in words {
        assert!(message.contains(word), "expected {word:?} in: {message}");
    }
}

#[test]
fn the_default_rig_configuration_is_valid() {
    let (path, text) = fixture("sim.toml");
    let config = RigConfig::parse(&text, &path).unwrap();
    assert_eq!(config.link, LinkConfig::Auto {});
    assert!(config.simulated());
    assert!(config.terminal_profile.is_file());
    assert!(config.devices().is_empty());
}

#[test]
fn errors_name_the_file_the_line_and_the_field() {
    let unknown = error_of(
        "backend = \"sim\"\n\n[card_feeder]",
        "backend = \"lamp\"\n\n[card_feeder]",
    );
    assert!(unknown.contains("sim.toml:"), "{unknown}");
    assert!(unknown.contains("power"), "{unknown}");
    assert!(unknown.contains("lamp"), "{unknown}");
    let missing = error_of("\"../cards\"", "\"../no-such-cards\"");
    assert!(
        missing.contains("rig.cards") && missing.contains("no-such-cards"),
        "{missing}"
    );
    let key = error_of("\"0123456789ABCDEF\"", "\"0123\"");
    assert!(
        key.contains("host.mac_key") && key.contains("16 hexadecimal"),
        "{key}"
    );
    let typo = error_of("port = 0", "prot = 0");
    assert!(typo.contains("prot"), "{typo}");
}

#[test]
fn the_line_number_points_at_the_mistake() {
    let (path, text) = fixture("sim.toml");
    let broken = text.replacen("backend = \"auto\"", "backend = \"wifi\"", 1);
    let line = broken.lines().position(|l| l.contains("wifi")).unwrap() + 1;
    let message = RigConfig::parse(&broken, &path).unwrap_err().to_string();
    assert!(
        message.contains(&format!("sim.toml:{line}:")) && message.contains("wifi"),
        "{message}"
    );
}

#[test]
fn the_pi_example_is_valid_and_names_its_devices() {
    let (path, text) = fixture("pi-example.toml");
    let config = RigConfig::parse(&text, &path).unwrap();
    assert!(!config.simulated());
    assert_eq!(config.board, Some(Board::Pi4));
    assert_eq!(config.gpio, Some(GpioConfig::Rppal {}));
    assert!(matches!(config.power, PowerConfig::Relay(ref relay) if relay.pin == 17));
    assert!(matches!(config.console, ConsoleConfig::Serial(ref s) if s.baud == 115_200));
    assert!(matches!(config.link, LinkConfig::Netlink(ref l) if l.interface == "eth1"));
    assert_eq!(config.inputs.len(), 1);
    let devices: Vec<String> = config.devices().into_iter().map(|(what, _)| what).collect();
    assert_eq!(
        devices,
        ["serial console", "network interface"],
        "eth1 once, for link and nftables"
    );
    // This machine has no such adapter: the check says which device and where it is configured.
    let missing = config.check_devices().unwrap_err().to_string();
    let line = pi_line("", "", "device = ");
    assert!(
        missing.contains(&format!(
            "pi-example.toml:{line}: console.device: no serial device"
        )),
        "{missing}"
    );
}

#[test]
fn a_pin_that_is_not_on_the_header_is_named_with_its_line() {
    pi_error(
        "push_pin = 22",
        "push_pin = 31",
        "push_pin = 31",
        "card_feeder.push_pin",
        &["GPIO 31", "Raspberry Pi 4"],
    );
}

#[test]
fn a_pin_used_twice_names_both_users() {
    pi_error(
        "pin = 23",
        "pin = 22",
        "pin = 22",
        "card_feeder.sensor.pin",
        &["GPIO 22", "push solenoid", "sensor"],
    );
    // An inline table's pin is found too.
    pi_error(
        "readback = { pin = 27",
        "readback = { pin = 17",
        "readback = { pin = 17",
        "power.readback",
        &["GPIO 17"],
    );
}

#[test]
fn a_pin_on_the_uart_the_console_reads_is_refused() {
    let to_uart = |text: &str| {
        text.replace(
            "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K5XYZ-if00-port0",
            "/dev/serial0",
        )
    };
    let (path, text) = fixture("pi-example.toml");
    let changed = to_uart(&text).replacen("pin = 5\n", "pin = 14\n", 1);
    let message = RigConfig::parse(&changed, &path).unwrap_err().to_string();
    let line = changed.lines().position(|l| l == "pin = 14").unwrap() + 1;
    assert!(
        message.contains(&format!("pi-example.toml:{line}: inputs.pin:")),
        "{message}"
    );
    assert!(
        message.contains("UART") && message.contains("/dev/serial0"),
        "{message}"
    );
}

#[test]
fn unknown_backends_and_fields_are_named() {
    pi_error(
        "backend = \"solenoid\"",
        "backend = \"robot-arm\"",
        "robot-arm",
        "card_feeder.backend",
        &["robot-arm"],
    );
    pi_error(
        "settle_ms = 50",
        "setle_ms = 50",
        "setle_ms",
        "power.setle_ms",
        &["setle_ms"],
    );
    pi_error(
        "driver = \"rppal\"",
        "driver = \"wiringpi\"",
        "wiringpi",
        "gpio.driver",
        &["wiringpi"],
    );
}

#[test]
fn a_missing_required_field_is_named() {
    pi_error(
        "pulse_ms = 80\n",
        "",
        "[card_feeder]",
        "card_feeder",
        &["pulse_ms"],
    );
}

#[test]
fn hardware_and_simulator_backends_do_not_mix() {
    pi_error(
        "backend = \"netlink\"\ninterface = \"eth1\"",
        "backend = \"netns\"",
        "backend = \"netns\"",
        "link.backend",
        &["simulated terminal only"],
    );
    pi_error(
        "backend = \"netlink\"",
        "backend = \"netns\"",
        "interface = \"eth1\"",
        "link.interface",
        &["takes no settings"],
    );
    let sim_with_serial = error_of(
        "backend = \"sim-pty\"",
        "backend = \"serial\"\ndevice = \"/dev/ttyUSB0\"",
    );
    assert!(
        sim_with_serial.contains("console") && sim_with_serial.contains("simulated one"),
        "{sim_with_serial}"
    );
}

#[test]
fn the_rppal_driver_needs_the_board_and_gpio_backends_need_a_driver() {
    pi_error(
        "board = \"pi4\"\n",
        "",
        "driver = \"rppal\"",
        "gpio.driver",
        &["board"],
    );
    pi_error("[gpio]\n# \"rppal\" on a Raspberry Pi; \"cdev\" with chip = \"/dev/gpiochip0\" on any other Linux board.\ndriver = \"rppal\"\n", "", "backend = \"relay\"", "power.backend", &["[gpio]"]);
}

#[test]
fn a_board_that_is_not_a_pi_is_named() {
    pi_error("board = \"pi4\"", "board = \"pi9\"", "pi9", "rig.board", &["pi9"]);
}

#[test]
fn serial_settings_are_checked_with_their_field() {
    pi_error(
        "baud = 115200",
        "baud = 0",
        "baud = 0",
        "console.baud",
        &["serial speed"],
    );
    pi_error(
        "stop_bits = 1",
        "stop_bits = 3",
        "stop_bits = 3",
        "console.stop_bits",
        &["3"],
    );
}

#[test]
fn feeder_settings_are_checked_with_their_field() {
    pi_error(
        "pulse_ms = 80",
        "pulse_ms = 0",
        "pulse_ms = 0",
        "card_feeder.pulse_ms",
        &["more than 0"],
    );
    pi_error(
        "timeout_ms = 500",
        "timeout_ms = 2",
        "timeout_ms = 2",
        "card_feeder.sensor.timeout_ms",
        &["debounce_ms"],
    );
    pi_error(
        "card = \"unionpay-debit\"",
        "card = \"amex-gold\"",
        "amex-gold",
        "card_feeder.card",
        &["no card profile"],
    );
}

#[test]
fn a_servo_needs_a_pwm_pin() {
    let servo = "backend = \"servo\"\ncard = \"unionpay-debit\"\npin = 22\ninserted_angle_deg = 120.0\nremoved_angle_deg = 30.0\ntravel_ms = 300\n";
    let (path, text) = fixture("pi-example.toml");
    let start = text.find("backend = \"solenoid\"").unwrap();
    let end = text.find("[console]").unwrap();
    let changed = format!("{}{servo}\n{}", &text[..start], &text[end..]);
    let message = RigConfig::parse(&changed, &path).unwrap_err().to_string();
    assert!(
        message.contains("card_feeder.pin") && message.contains("PWM"),
        "{message}"
    );
    let on_pwm = changed.replacen("pin = 22", "pin = 18", 1);
    let config = RigConfig::parse(&on_pwm, &path).unwrap();
    assert!(matches!(config.card_feeder, CardFeederConfig::Servo(ref s) if s.pin == 18));
}

#[test]
fn nftables_and_the_link_name_the_same_interface() {
    pi_error(
        "interface = \"eth1\"\n\n# Inputs",
        "interface = \"eth2\"\n\n# Inputs",
        "\"eth2\"",
        "impairment.interface",
        &["eth2", "eth1"],
    );
}

#[test]
fn the_host_proxy_needs_its_upstream() {
    pi_error(
        "mode = \"simulator\"",
        "mode = \"proxy\"",
        "mode = \"proxy\"",
        "host.mode",
        &["upstream"],
    );
    let (path, text) = fixture("pi-example.toml");
    let proxy = text.replacen(
        "mode = \"simulator\"",
        "mode = \"proxy\"\nupstream = \"10.20.0.5:6000\"",
        1,
    );
    let config = RigConfig::parse(&proxy, &path).unwrap();
    assert_eq!(
        config.host.mode,
        HostMode::Proxy {
            upstream: "10.20.0.5:6000".into()
        }
    );
}
