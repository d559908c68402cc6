import functools
import logging
import os

import click
import redis.exceptions
from celery import Celery, beat, bootsteps, signals
from django.db import close_old_connections
from kombu.transport import redis as redis_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")

app = Celery("telemetry_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


class BeatThread(bootsteps.StartStopStep):
    """`celery worker --beat-thread`: beat runs in a thread of this worker, where Celery's own
    `--beat` forks a process for it (as large as the worker). For `make run`'s one worker on one
    machine; never on two workers at once (each would send every periodic task): production runs
    beat as a process of its own, exactly one (deploy/)."""

    label = "Beat thread"
    conditional = True

    def __init__(self, worker, beat_thread: bool = False, **kwargs):
        self.enabled = beat_thread
        super().__init__(worker, **kwargs)

    def create(self, worker):
        return beat.EmbeddedService(
            worker.app, thread=True, scheduler_cls=worker.scheduler, schedule_filename=worker.schedule_filename
        )


app.user_options["worker"].add(click.Option(["--beat-thread"], is_flag=True, help="Run beat in a thread of this worker."))
app.steps["worker"].add(BeatThread)


@signals.beat_init.connect
def _tick_at_start(sender, **kwargs) -> None:
    """Beat's first tick goes out as it starts, not one WORKER_TICK_SECONDS later: `doctor` and
    /health, asked just after `make run`, find worker and beat up instead of a tick that never ran."""
    sender.app.send_task("core.tasks.record_worker_heartbeat")


@signals.task_prerun.connect
@signals.task_postrun.connect
def _fresh_database_connections(sender, **kwargs) -> None:
    """Around each task, as around each request: a connection that failed or is past its age is
    closed (with the pool: handed back). Celery's own closing is spaced out (CELERY_DB_REUSE_MAX)."""
    if not getattr(sender.request, "is_eager", False):  # inside the caller's transaction
        close_old_connections()


def _only_while_connected(connparams):
    """Workaround for Celery 5.7.0 / kombu 5.7.0. When a worker loses Redis while it holds an
    unacknowledged task (acks late), its teardown closes the broker connection; closing the
    remote-control channel fails on the dead Redis, so the default channel is left open while
    the connection forgets its settings. Celery then closes that channel again, which needs a new
    Redis client to hand the task back and fails with AttributeError ('NoneType' object has no
    attribute 'hostname'): not an error the teardown ignores, so the worker dies ("Unrecoverable
    error") instead of reconnecting, and under `make run` honcho then stops every process. As a
    connection error it is ignored and the worker reconnects; the task stays in Redis's
    unacknowledged set, which kombu restores after its visibility timeout (tests/faults/test_redis.py)."""

    @functools.wraps(connparams)
    def checked(channel, *args, **kwargs):
        if channel.connection.client is None:
            logger.warning("celery: the broker connection is closed; unacknowledged tasks are left to Redis to redeliver")
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return connparams(channel, *args, **kwargs)

    return checked


redis_transport.Channel._connparams = _only_while_connected(redis_transport.Channel._connparams)
