# Run by tests/contract.rs: python -c <this> CLIENT_DIR BASE_URL API_KEY. Uses the client that
# openapi-python-client generated from /openapi.json, as a Python user would.
import sys

client_dir, base_url, key = sys.argv[1:4]
sys.path.insert(0, client_dir)

from pysaas_client import AuthenticatedClient, models  # noqa: E402
from pysaas_client.api.jobs import cancel_job, get_job, list_jobs, submit_job  # noqa: E402

client = AuthenticatedClient(base_url=base_url, token=key, raise_on_unexpected_status=True)
noop = next(getattr(models, n) for n in dir(models) if n.lower() == "submitjobsystemnoop")
body = noop.from_dict({"kind": "system.noop", "queue": "pyclient", "priority": 3})

submitted = submit_job.sync_detailed(client=client, body=body)
assert submitted.status_code == 202, submitted
job = submitted.parsed
print("submitted", job.id, job.state)

read = get_job.sync(client=client, id=job.id)
assert read.id == job.id and read.kind == "system.noop" and read.priority == 3, read
print("read", read.state)

page = list_jobs.sync(client=client, queue="pyclient")
assert [j.id for j in page.jobs] == [job.id], page
print("listed", len(page.jobs))

cancelled = cancel_job.sync(client=client, id=job.id)
state = getattr(cancelled.state, "value", cancelled.state)
assert state == "cancelled", cancelled
print("cancelled")
