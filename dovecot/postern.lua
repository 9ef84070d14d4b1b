-- postern.lua: Dovecot 2.4 passdb and userdb through postern's loopback auth API.
--
-- Dovecot 2.4 has no dict passdb/userdb, so on 2.4 logins and userdb lookups come here
-- and this script asks postern over HTTP (postern's `listen.auth_http`). postern does
-- every check itself (password, just-in-time creation, blocks, brute-force limits);
-- this file only carries the question and the answer. The Debian package installs it as
-- /usr/share/postern/dovecot/postern.lua; docs/dovecot.md has the Dovecot lines.
--
-- Settings, all optional, from `lua_settings { }` inside the `passdb lua` and
-- `userdb lua` blocks (Dovecot hands them to script_init):
--
--   postern_url          http://127.0.0.1:8026            postern's listen.auth_http
--   postern_secret_file  /etc/postern/auth-http.secret    postern's auth_http.secret_file
--   postern_timeout      5s                               per request
--
-- The secret file is read at the first lookup, in Dovecot's auth-worker (root), not in
-- script_init (which also runs in the unprivileged auth process), and again after postern
-- refuses the secret, so a rotated secret is picked up without a reload.
--
-- Wire (postern answers `key=value` lines because this script sends Accept: text/plain):
--
--   POST /v1/passdb {"user":..,"password":..,"service":"imap","remote_ip":".."}
--     200 result=ok user=<canonical>  -> PASSDB_RESULT_OK, user=<canonical>
--     200 result=fail                 -> PASSDB_RESULT_PASSWORD_MISMATCH (any refusal)
--     anything else, or unreachable   -> PASSDB_RESULT_INTERNAL_FAILURE ([UNAVAILABLE])
--   POST /v1/userdb {"user":..}
--     200 result=ok user= home= uid= gid= quota_storage_size=  -> USERDB_RESULT_OK
--     200 result=unknown              -> USERDB_RESULT_USER_UNKNOWN
--     anything else                   -> USERDB_RESULT_INTERNAL_FAILURE
--   GET /v1/users                     -> auth_userdb_iterate (doveadm user '*')
--     200 result=ok users=<a> users=<b> ...

local settings = {
  url = "http://127.0.0.1:8026",
  secret_file = "/etc/postern/auth-http.secret",
  timeout = "5s",
}
local KNOWN = { postern_url = "url", postern_secret_file = "secret_file", postern_timeout = "timeout" }

-- The secret, once read.
local secret = nil

function script_init(args)
  for key, value in pairs(args or {}) do
    local name = KNOWN[key]
    if name == nil then
      error("postern.lua: unknown lua_settings key '" .. tostring(key) ..
        "' (known: postern_url, postern_secret_file, postern_timeout)")
    end
    settings[name] = tostring(value)
  end
  settings.url = settings.url:gsub("/+$", "")
  if not settings.url:match("^https?://[^/]") then
    error("postern.lua: postern_url must be an http:// URL, got '" .. settings.url .. "'")
  end
  return 0
end

-- Reads and trims the secret file (the same whitespace postern trims).
local function load_secret()
  if secret ~= nil then
    return secret
  end
  local file, err = io.open(settings.secret_file, "rb")
  if file == nil then
    return nil, "cannot read the postern secret file: " .. tostring(err)
  end
  local text = file:read("a") or ""
  file:close()
  text = text:gsub("^[ \t\n\f\r]+", ""):gsub("[ \t\n\f\r]+$", "")
  if #text < 16 then
    return nil, "the postern secret file " .. settings.secret_file ..
      " holds no secret of at least 16 characters"
  end
  secret = text
  return secret
end

local function json_string(s)
  local escaped = s:gsub('[%c"\\]', function(c)
    if c == '"' then
      return '\\"'
    elseif c == "\\" then
      return "\\\\"
    end
    return string.format("\\u%04x", c:byte())
  end)
  return '"' .. escaped .. '"'
end

-- A JSON object of string values, from a list of {key, value} pairs.
local function json_object(pairs_list)
  local parts = {}
  for _, kv in ipairs(pairs_list) do
    parts[#parts + 1] = json_string(kv[1]) .. ":" .. json_string(kv[2])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- `key=value` lines: the first value of each key, and every value of each key.
local function parse_answer(body)
  local first, all = {}, {}
  for line in body:gmatch("[^\n]+") do
    local key, value = line:match("^([^=]+)=(.*)$")
    if key ~= nil then
      if first[key] == nil then
        first[key] = value
      end
      all[key] = all[key] or {}
      table.insert(all[key], value)
    end
  end
  return first, all
end

-- One request to postern. Returns {status, reason, fields, lists} or nil and an error.
local function call(method, path, payload)
  local token, err = load_secret()
  if token == nil then
    return nil, err
  end
  local client = dovecot.http.client({
    request_timeout = settings.timeout,
    request_max_attempts = "1",
    user_agent = "dovecot-postern",
  })
  local request = client:request({ url = settings.url .. path, method = method })
  request:add_header("Authorization", "Bearer " .. token)
  request:add_header("Accept", "text/plain")
  if payload ~= nil then
    request:add_header("Content-Type", "application/json")
    request:set_payload(payload)
  end
  local response = request:submit()
  local status = response:status()
  if status == 401 or status == 403 then
    -- Perhaps rotated: read the file again next time.
    secret = nil
  end
  local fields, lists = parse_answer(response:payload() or "")
  return { status = status, reason = response:reason(), fields = fields, lists = lists }
end

-- Runs `call`, turning a Lua error into an error text.
local function ask(method, path, payload)
  local ok, answer, err = pcall(call, method, path, payload)
  if not ok then
    return nil, "postern.lua: " .. tostring(answer)
  end
  return answer, err
end

-- The error text for an answer that is neither yes nor no.
local function describe(answer, err)
  if answer == nil then
    return err
  end
  -- Dovecot's own failures (connect, timeout, ...) are 9000 and up.
  local text = "postern auth API " .. settings.url .. ": " .. tostring(answer.status) ..
    " " .. tostring(answer.reason)
  if answer.fields.reason ~= nil then
    text = text .. " (" .. answer.fields.reason .. ")"
  end
  return text
end

local function is_utf8(s)
  return type(s) == "string" and utf8.len(s) ~= nil
end

function auth_password_verify(req, password)
  local user = req.user
  -- postern's names and passwords are UTF-8: other bytes can match no account.
  if not is_utf8(user) or not is_utf8(password) then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "user or password is not UTF-8"
  end
  local body = json_object({
    { "user", user },
    { "password", password },
    { "service", req.protocol or "" },
    { "remote_ip", req.remote_ip or "" },
  })
  local answer, err = ask("POST", "/v1/passdb", body)
  if answer ~= nil and answer.status == 200 then
    local result = answer.fields.result
    if result == "ok" and answer.fields.user ~= nil then
      return dovecot.auth.PASSDB_RESULT_OK, { user = answer.fields.user }
    elseif result == "fail" then
      return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, "refused by postern"
    end
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, describe(answer, err)
end

-- Only for mechanisms that need the stored password (CRAM-MD5, ...) and lookups without
-- one: postern never hands out password hashes, it checks passwords itself.
function auth_passdb_lookup(req)
  return dovecot.auth.PASSDB_RESULT_SCHEME_NOT_AVAILABLE,
    "postern checks passwords itself: use plaintext mechanisms (auth_mechanisms = plain login)"
end

local USERDB_FIELDS = { "user", "home", "uid", "gid", "quota_storage_size" }

function auth_userdb_lookup(req)
  local user = req.user
  if not is_utf8(user) then
    return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "user is not UTF-8"
  end
  local answer, err = ask("POST", "/v1/userdb", json_object({ { "user", user } }))
  if answer ~= nil and answer.status == 200 then
    local result = answer.fields.result
    if result == "ok" then
      local fields = {}
      for _, key in ipairs(USERDB_FIELDS) do
        fields[key] = answer.fields[key]
      end
      return dovecot.auth.USERDB_RESULT_OK, fields
    elseif result == "unknown" then
      return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "no such account"
    end
  end
  return dovecot.auth.USERDB_RESULT_INTERNAL_FAILURE, describe(answer, err)
end

-- `doveadm user '*'`. A failure raises, which Dovecot logs and reports as a failed
-- iteration (never as an empty list).
function auth_userdb_iterate()
  local answer, err = ask("GET", "/v1/users", nil)
  if answer ~= nil and answer.status == 200 and answer.fields.result == "ok" then
    return answer.lists.users or {}
  end
  error(describe(answer, err))
end
