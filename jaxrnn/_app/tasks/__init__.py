"""The built-in training tasks, one module each, behind a registry: what ``jaxrnn train --task NAME`` trains.

The interface (:class:`~jaxrnn._app.tasks.base.Task`, :class:`~jaxrnn._app.tasks.base.Setup`)
and what the tasks share are in :mod:`jaxrnn._app.tasks.base`; ``docs/training-design.md``
describes it. A new task is one module with a ``TASK`` and one entry below.
"""

from jaxrnn._app.tasks import adding, charlm, copy, digits, series, sunspots, text
from jaxrnn._app.tasks.base import Setup as Setup
from jaxrnn._app.tasks.base import Task as Task

# In the order `jaxrnn tasks` lists them: the built-in data sets, then users' own files.
TASKS: dict[str, Task] = {
    task.name: task
    for task in (adding.TASK, copy.TASK, sunspots.TASK, digits.TASK, charlm.TASK, series.TASK, text.TASK)
}
