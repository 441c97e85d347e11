-- Several messages with different roles on one milter connection, with
-- ABORT in the middle and twice in a row: each message is decided on its
-- own facts, none inherits the previous one's sender, login or recipients.
dofile(dir .. "/common.lua")

local conn = open("192.0.2.77", "client.customer.test")

-- 1. An Internet customer writes to the unified address: the manager is added.
internet_to_sales(conn, "MTROLE1", "customer@customer.test")

-- 2. A staff message (Lisi) given up after its headers: ABORT...
mail(conn, "lisi@example.com", "MTROLE2", "lisi")
rcpt(conn, "other@customer.test")
ok(mt.header(conn, "From", "Lisi <lisi@example.com>"), "header From (aborted message)")
ok(mt.abort(conn), "ABORT")
-- ...and ABORT again, as an MTA does after RSET and then QUIT of an empty transaction.
ok(mt.abort(conn), "second ABORT")

-- 3. Zhangsan (SASL login zhangsan) writes to a customer: From and envelope
-- sender become sales@example.com, the manager keeps a copy. Nothing of
-- Lisi's aborted message may show.
mail(conn, "zhangsan@example.com", "MTROLE3", "zhangsan")
rcpt(conn, "customer@customer.test")
message(conn, "MTROLE3", {
  {"From", "Zhangsan <zhangsan@example.com>"},
  {"To", "customer@customer.test"},
  {"Subject", "re: question"},
})
expect_change(conn, mt.eom_check(conn, MT_HDRCHANGE, "From", "Zhangsan <sales@example.com>"),
              "MTROLE3: From not changed to Zhangsan <sales@example.com>")
expect_change(conn, mt.eom_check(conn, MT_RCPTADD, "<manager@example.com>"), "MTROLE3: manager copy not added")
expect_change(conn, not mt.eom_check(conn, MT_RCPTADD, "<lisi@example.com>"),
              "MTROLE3: Lisi (of the aborted message) was added")
expect_change(conn, not mt.eom_check(conn, MT_RCPTADD, "<other@customer.test>"),
              "MTROLE3: the aborted message's recipient was added")

-- 4. Internet mail straight to a staff address (no login now): 550 at RCPT.
mail(conn, "customer@customer.test", "MTROLE4")
rcpt(conn, "zhangsan@example.com", REPLYCODE)
ok(mt.abort(conn), "ABORT after the refused recipient")

-- 5. The connection still decides the next message on its own.
internet_to_sales(conn, "MTROLE5", "second@customer.test")

mt.disconnect(conn)
mt.echo("roles: done")
