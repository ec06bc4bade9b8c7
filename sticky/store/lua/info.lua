-- info: a profile's version, and its settings and pool unless cached. Read-only.
-- KEYS 1-4. ARGV: the caller's cached version.
-- Returns {'u'} or {'ok', version[, settings, pool...]}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'u'}
end
return append_pool({'ok'}, ARGV[1])
