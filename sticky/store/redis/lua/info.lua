-- info: a profile's version, and its settings and pool unless cached. Read-only.
-- KEYS 1-4. ARGV: the caller's cached version.
-- Returns {UNKNOWN_PROFILE} or {OK, version[, settings, pool...]}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {{{UNKNOWN_PROFILE}}}
end
return append_pool({{{OK}}}, ARGV[1])
