-- `count` connections open at once (-D count=N, -D tag=T), their steps
-- interleaved: every message must get its own decision.
dofile(dir .. "/common.lua")
local n = tonumber(count)
local conns = {}
for i = 1, n do
  conns[i] = open("192.0.2." .. (i % 200 + 20), "c" .. i .. ".customer.test")
end
for i = 1, n do
  if i % 2 == 0 then
    mail(conns[i], "zhangsan@example.com", tag .. "S" .. i, "zhangsan")
  else
    mail(conns[i], "c" .. i .. "@customer.test", tag .. "I" .. i)
  end
end
for i = 1, n do
  if i % 2 == 0 then rcpt(conns[i], "c" .. i .. "@customer.test") else rcpt(conns[i], "sales@example.com") end
end
for i = 1, n do
  local id
  if i % 2 == 0 then
    id = tag .. "S" .. i
    message(conns[i], id, {{"From", "Zhangsan <zhangsan@example.com>"}, {"To", "c" .. i .. "@customer.test"}})
    expect_change(conns[i], mt.eom_check(conns[i], MT_HDRCHANGE, "From", "Zhangsan <sales@example.com>"),
                  id .. ": staff From not changed to Zhangsan <sales@example.com>")
  else
    id = tag .. "I" .. i
    message(conns[i], id, {{"From", "c" .. i .. "@customer.test"}, {"To", "sales@example.com"}})
    expect_change(conns[i], not mt.eom_check(conns[i], MT_HDRCHANGE, "From"), id .. ": Internet From changed")
  end
  expect_change(conns[i], mt.eom_check(conns[i], MT_RCPTADD, "<manager@example.com>"), id .. ": no manager copy")
end
for i = 1, n do mt.disconnect(conns[i]) end
mt.echo("concurrent: " .. n .. " done")
