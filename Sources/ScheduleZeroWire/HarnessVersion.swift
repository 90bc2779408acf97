/// The harness's version, printed by `--version` of every tool (`szgovernor`, `szchaos`, `szmock`).
/// Semantic versioning; behaviour changes are listed in CHANGELOG.md.
public enum HarnessVersion {
    public static let current = "0.6.0"
}
