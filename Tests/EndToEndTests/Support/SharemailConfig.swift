/// The sharemail configuration every E2E suite uses (the schema from the issue).
enum SharemailConfig {
    /// `zhangsanAliases`: extra names for Zhangsan (the aliases feature, tested in its own suite).
    /// `state`: the conversation memory. "off" unless a suite tests the memory: these suites
    /// prove routing by names, and none may fall back on sharemail's default
    /// /var/lib/sharemail/state.sqlite (shared by every lab, and by a real install). nil: no
    /// `state` key, the default (only the out-of-the-box suite).
    static func standard(zhangsanAliases: [String]? = nil, state: String? = "off") -> String {
        let aliases =
            zhangsanAliases.map { names in
                "  aliases = [" + names.map { "\"\($0)\"" }.joined(separator: ", ") + "]\n"
            } ?? ""
        return """
            socket = "unix:/unused/milter.sock"   # overridden by --socket
            # As postfix-conf/sharemail.example.toml: Postfix (user postfix) must reach the socket.
            socket_group = "postfix"
            socket_mode = "0660"
            trusted_networks = []
            \(state.map { "state = \"\($0)\"" } ?? "# no state: the default memory")

            [[mailbox]]
            address = "sales@example.com"
            manager = "manager@example.com"
            manager_login = "manager"
            forward_unnamed = true

              [[mailbox.staff]]
              name = "Zhangsan"
              address = "zhangsan@example.com"
              login = "zhangsan"
            \(aliases)
              [[mailbox.staff]]
              name = "Lisi"
              address = "lisi@example.com"
              login = "lisi"

              [[mailbox.staff]]
              name = "Wangwu"
              address = "wangwu@example.com"
              login = "wangwu"
              receive_internet = true
              send_internet = false

            """
    }
}
