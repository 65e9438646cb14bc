"""Several gateway processes on one host: `moeprune serve --workers N` (docs/gateway.md, "Worker processes").

The serve process is the supervisor: it validates the configuration, starts and
watches the managed engines (app/engines/supervisor.py), binds the port once (one
socket per worker, SO_REUSEPORT) and runs N worker processes that serve the app on
them. Workers reach the engines it started and never start or stop one. Modules:

- `serve.py`: the supervisor's run, from `moeprune serve` to the last engine stopped;
- `pool.py`: the worker processes: start, restart a dead one (bounded), stop;
- `worker.py`: one worker's run: the app, attached to the engines, on its inherited socket;
- `engines.py`: the engine table the supervisor sends its workers, and how a worker applies it;
- `feedback_relay.py`: feedback answered by a worker that did not serve the answer reaches the one that did;
- `shared_metrics.py`: the Prometheus files every process writes and every worker reads.
"""
