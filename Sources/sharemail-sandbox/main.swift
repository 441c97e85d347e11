// sharemail-sandbox: the seed document's cases through a throwaway Postfix on loopback, with
// sharemail and postfix-conf/sharemail.example.toml; prints where each message landed.
// `scripts/sandbox` builds and runs it.
#if canImport(Glibc)
    import Glibc
#endif

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("-h") || arguments.contains("--help") {
    say(Sandbox.usage)
    exit(0)
}
if let unknown = arguments.first(where: { $0 != "--keep" }) {
    sayError("sharemail-sandbox: unknown argument \(unknown)\n\n\(Sandbox.usage)")
    exit(Sandbox.ExitStatus.couldNotRun)
}
exit(Sandbox(keep: arguments.contains("--keep")).run())
