-- Shared by the sharemail miltertest scripts (dofile'd; `socket` and `dir`
-- come from the test with -D). Each helper plays one step as Postfix does,
-- with the macros Postfix sends, and fails the script (error → exit 1) with
-- the step's name when the milter's answer is not the expected one.

-- Reply codes, as mt.getreply returns them.
CONTINUE = SMFIR_CONTINUE
REPLYCODE = SMFIR_REPLYCODE  -- a reject or tempfail with its own text ('y')
TEMPFAIL = SMFIR_TEMPFAIL

function fail(what)
  mt.echo("FAIL: " .. what)  -- this miltertest prints no script error itself
  error(what, 0)
end

function ok(result, step)
  if result ~= nil then fail(step .. ": " .. tostring(result)) end
end

function reply_name(code)
  if code == nil or code == 0 then return "none" end
  return string.format("'%s'", string.char(code))
end

-- Checks the reply to a step, unless the milter negotiated no reply for it
-- (then miltertest reads none and there is nothing to check).
function expect(conn, want, step, noreply_option)
  if noreply_option ~= nil and mt.test_option(conn, noreply_option) then return end
  local got = mt.getreply(conn)
  if got ~= want then
    fail(step .. ": reply " .. reply_name(got) .. ", expected " .. reply_name(want))
  end
end

-- A new milter connection for an SMTP client at `ip` (port: miltertest
-- always sends 12345). Negotiates with what Postfix 3.7 offers (miltertest's
-- defaults: every action and protocol option).
function open(ip, hostname)
  local conn = mt.connect(socket, 5, 0.2)
  if conn == nil then fail("mt.connect(" .. socket .. ") failed") end
  ok(mt.negotiate(conn, nil, nil, nil), "negotiate")
  connect(conn, ip, hostname)
  return conn
end

-- CONNECT (also the start of a new session after QUIT_NC, which miltertest
-- cannot send: the raw client in the Swift suite does that).
function connect(conn, ip, hostname)
  ok(mt.macro(conn, SMFIC_CONNECT, "j", "mx.example.com", "{daemon_name}", "smtpd",
              "{client_addr}", ip, "{client_name}", hostname), "CONNECT macros")
  ok(mt.conninfo(conn, hostname, ip), "CONNECT " .. ip)
  expect(conn, CONTINUE, "CONNECT " .. ip, SMFIP_NR_CONN)
end

-- MAIL FROM as Postfix sends it: the address in <>, {mail_addr} bare (empty
-- for <>), {auth_authen} only after a SASL login, the queue id in i.
function mail(conn, sender, queue_id, login)
  local bare = sender
  if login ~= nil then
    ok(mt.macro(conn, SMFIC_MAIL, "{mail_addr}", bare, "i", queue_id, "{auth_authen}", login), "MAIL macros")
  else
    ok(mt.macro(conn, SMFIC_MAIL, "{mail_addr}", bare, "i", queue_id), "MAIL macros")
  end
  ok(mt.mailfrom(conn, "<" .. sender .. ">"), "MAIL FROM:<" .. sender .. ">")
  expect(conn, CONTINUE, "MAIL FROM:<" .. sender .. ">", SMFIP_NR_MAIL)
end

-- RCPT TO with Postfix's resolution: {rcpt_addr} bare, {rcpt_host} its
-- domain, {rcpt_mailer} virtual for example.com (delivered here), smtp
-- otherwise. `want`: the expected reply (CONTINUE, or REPLYCODE for a refusal).
function rcpt(conn, recipient, want)
  local host = string.match(recipient, "@(.*)$") or ""
  local mailer = "smtp"
  if host == "example.com" then mailer = "virtual" end
  ok(mt.macro(conn, SMFIC_RCPT, "{rcpt_addr}", recipient, "{rcpt_host}", host,
              "{rcpt_mailer}", mailer), "RCPT macros")
  ok(mt.rcptto(conn, "<" .. recipient .. ">"), "RCPT TO:<" .. recipient .. ">")
  expect(conn, want or CONTINUE, "RCPT TO:<" .. recipient .. ">", SMFIP_NR_RCPT)
end

-- The header section, then end of message with the queue id macro. Returns
-- after the milter's final reply; its changes are then in mt.eom_check.
function message(conn, queue_id, headers)
  for _, header in ipairs(headers) do
    ok(mt.header(conn, header[1], header[2]), "header " .. header[1])
    expect(conn, CONTINUE, "header " .. header[1], SMFIP_NR_HDR)
  end
  -- 'E': the end-of-message macros (miltertest names no constant for it).
  ok(mt.macro(conn, string.byte("E"), "i", queue_id), "EOM macros")
  mt.echo("== eom " .. queue_id .. " begin")
  ok(mt.eom(conn), "end of message " .. queue_id)
  mt.echo("== eom " .. queue_id .. " end")
  expect(conn, CONTINUE, "end of message " .. queue_id)
end

function expect_change(conn, condition, what)
  if not condition then fail(what) end
end

-- One Internet message to sales@: the manager must be added.
function internet_to_sales(conn, queue_id, customer)
  mail(conn, customer, queue_id)
  rcpt(conn, "sales@example.com")
  message(conn, queue_id, {
    {"From", customer},
    {"To", "sales@example.com"},
    {"Subject", "question " .. queue_id},
  })
  expect_change(conn, mt.eom_check(conn, MT_RCPTADD, "<manager@example.com>"),
                queue_id .. ": Internet mail to sales@ did not get the manager added")
  expect_change(conn, not mt.eom_check(conn, MT_HDRCHANGE, "From"),
                queue_id .. ": Internet mail got its From changed")
end
