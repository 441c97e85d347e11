-- One good Internet message on a new connection: proves the daemon still answers.
dofile(dir .. "/common.lua")
local conn = open("192.0.2.77", "client.customer.test")
internet_to_sales(conn, queue_id or "MTGOOD", "customer@customer.test")
mt.disconnect(conn)
mt.echo("good: done")
