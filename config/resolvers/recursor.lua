-- PowerDNS Recursor 4.x: in the file recursor.conf's lua-config-file names.
-- 4.8 logs its OUTGOING traffic (RESOLVER_QUERY/RESPONSE), opens one connection per thread, and
-- closes without STOP on shutdown (a normal end for the forwarder).
dnstapFrameStreamServer({'/var/run/dnstap/dnstap.sock'}, {logQueries = true, logResponses = true})
-- Over TCP (the forwarder with -tcp-listen 127.0.0.1:6000):
-- dnstapFrameStreamServer({'127.0.0.1:6000'}, {logQueries = true, logResponses = true})
