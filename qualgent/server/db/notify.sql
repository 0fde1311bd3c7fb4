-- The LISTEN hub's own connection (qualgent.server.notify.hub). Every notification of the queue is sent on the one
-- channel `qualgent` (qualgent_notify_jobs and the triggers send on it; qualgent.server.notify.CHANNEL names it).

-- name: listen
LISTEN qualgent;

-- name: probe
-- Is the listening connection still alive? (A connection cut without a word is found only by using it.)
SELECT 1;
