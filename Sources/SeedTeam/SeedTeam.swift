// The seed's team as a configuration file: one fixture for the unit tests of
// the engine and of the daemon.

/// The seed's team: manager, Zhangsan and Lisi behind sales@example.com,
/// plus Wangwu, who may receive Internet mail but not send it.
public let seedTOML = """
    socket = "unix:/run/sharemail/milter.sock"
    trusted_networks = ["10.1.0.0/16", "2001:db8:1::/48"]

    [[mailbox]]
    address = "sales@example.com"
    manager = "manager@example.com"
    manager_login = "manager"
    forward_unnamed = true

      [[mailbox.staff]]
      name = "Zhangsan"
      aliases = ["Zhang San", "张三"]
      address = "zhangsan@example.com"
      login = "zhangsan"

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

    [[mailbox]]
    address = "support@example.org"

      [[mailbox.staff]]
      name = "Zhaoliu"
      address = "zhaoliu@example.org"
    """
