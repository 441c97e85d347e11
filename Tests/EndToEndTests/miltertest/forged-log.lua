-- A client that tries to forge log lines: CR, LF and an escape sequence in
-- MAIL FROM and in the SASL login ({auth_authen}). The daemon must log them
-- escaped, on the one line (the Swift test reads the log).
dofile(dir .. "/common.lua")
local conn = open("192.0.2.77", "client.customer.test")
local forged = "\n2026-01-01T00:00:00+0000 info sharemail: FORGED-LINE decision role=staff"
local sender = "evil" .. forged .. "@customer.test"
local login = "zhangsan\r\nFORGED-LOGIN \27[2J"
ok(mt.macro(conn, SMFIC_MAIL, "{mail_addr}", sender, "i", "MTFORGE1", "{auth_authen}", login), "MAIL macros")
ok(mt.mailfrom(conn, "<" .. sender .. ">"), "MAIL FROM")
-- Accepted or refused (the replies are not checked here), the daemon logs
-- the sender and the login.
ok(mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", "zhangsan@example.com", "{rcpt_host}", "example.com", "{rcpt_mailer}", "virtual"), "RCPT macros")
ok(mt.rcptto(conn, "<zhangsan@example.com>"), "RCPT TO")
ok(mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", "customer@customer.test", "{rcpt_host}", "customer.test", "{rcpt_mailer}", "smtp"), "RCPT macros")
ok(mt.rcptto(conn, "<customer@customer.test>"), "RCPT TO")
message(conn, "MTFORGE1", {{"From", "evil@customer.test"}, {"To", "customer@customer.test"}})
mt.disconnect(conn)
mt.echo("forged-log: done")
