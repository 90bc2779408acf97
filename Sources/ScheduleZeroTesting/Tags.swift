import Testing

/// The tags of this suite. A suite's or test's name spells its tags (see docs/TESTING.md), because
/// Swift 6.3 cannot select tests by tag from the command line.
extension Tag {
    /// No process and no socket outside the test process; seconds for the whole category.
    @Tag public static var unit: Self
    /// Real sockets, real processes.
    @Tag public static var integration: Self
    /// An entry of the regression catalogue (docs/TESTING.md), named after what broke.
    @Tag public static var regression: Self
    /// Touches ZeroMQ sockets.
    @Tag public static var zmq: Self
    /// Touches the process governor.
    @Tag public static var governor: Self
    /// Network faults between network namespaces (`ip netns`, iptables, tc): needs root; skipped otherwise.
    @Tag public static var network: Self
    /// Needs more than a few seconds.
    @Tag public static var slow: Self
}
