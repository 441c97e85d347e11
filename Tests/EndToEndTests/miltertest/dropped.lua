-- A connection dropped in the middle of a message (the MTA died, or the
-- network between): no QUIT, no ABORT. Then a new connection must work.
dofile(dir .. "/common.lua")

local first = open("192.0.2.77", "client.customer.test")
mail(first, "customer@customer.test", "MTDROP1")
rcpt(first, "sales@example.com")
ok(mt.header(first, "From", "customer@customer.test"), "header From")
ok(mt.header(first, "Subject", "cut off"), "header Subject")
mt.disconnect(first, false)  -- abrupt: the socket is closed, nothing more sent

-- Another one dropped right after MAIL FROM.
local second = open("192.0.2.78", "other.customer.test")
mail(second, "other@customer.test", "MTDROP2")
mt.disconnect(second, false)

local conn = open("192.0.2.77", "client.customer.test")
internet_to_sales(conn, "MTDROP3", "customer@customer.test")
mt.disconnect(conn)
mt.echo("dropped: done")
