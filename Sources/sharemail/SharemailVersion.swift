/// sharemail's version: `sharemail --version` prints it, and `scripts/package`
/// checks it against the top entry of debian/changelog, so the binary, the
/// package name and the changelog never disagree.
enum SharemailVersion {
    static let current = "0.1.0"
}
