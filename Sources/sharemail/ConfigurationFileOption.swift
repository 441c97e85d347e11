import ArgumentParser

/// `--config FILE`: the option of every command that reads the configuration.
struct ConfigurationFileOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The TOML configuration file.", valueName: "file"))
    var config: String = "/etc/sharemail/sharemail.toml"
}
