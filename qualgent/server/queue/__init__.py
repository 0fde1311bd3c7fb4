"""The queue's operations. Each public function is one transaction, and every change of a job's state
happens here, together with its notification.

    submit      jobs.submit                        -> pending, in the key's pending group
    claim       claims.claim                       group pending -> running, under a lease
    start       claims.start_job                   job pending -> running, attempt opened
    report      claims.report_result               job running -> completed | failed | pending (retry)
    heartbeat   claims.heartbeat                   leases extended; cancelled jobs reported back
    release     claims.release                     unfinished jobs back to the queue
    rescue      claims.rescue_lapsed               the same, for claims whose lease lapsed
    cancel      jobs.cancel                        pending | running -> cancelled
"""

from qualgent.server.queue.jobs import JobSpec

__all__ = ["JobSpec"]
