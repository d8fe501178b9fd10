"""A *simulated annotator*: answers Label Studio's open tasks through its API from the digits'
hidden labels (optionally with deliberate mistakes). Used by the end-to-end test and by
``benchmarks/bench_loop.py``; it talks to a real Label Studio, only the person is simulated."""

from __future__ import annotations

import random
import threading
from pathlib import Path


def truth_of_image(image_ref: str) -> int:
    """The hidden digit of a Label Studio task image: the file's stem ends with its digits index
    (``digits_gt`` names images ``<index>.png``; the label step may prefix ``<k>-``)."""
    from antgo_mlflow.data.sources.digits import _load_source

    name = Path(image_ref.split("?d=")[-1]).stem
    return int(_load_source()[2][int(name.split("-")[-1])])


class Annotator(threading.Thread):
    """Answers every open task of every Label Studio project with the digit's true class (a
    fraction ``mistakes`` of answers, drawn with ``seed``, get another class). Answers only while
    ``enabled`` is set; ``answered`` counts the annotations posted."""

    def __init__(self, api, mistakes: float = 0.0, seed: int = 0, enabled: bool = False):
        super().__init__(daemon=True)
        self.api, self.mistakes, self.rng = api, mistakes, random.Random(seed)
        self.stop, self.enabled, self.answered, self.wrong = (
            threading.Event(),
            threading.Event(),
            0,
            0,
        )
        if enabled:
            self.enabled.set()

    def answer(self, image_ref: str) -> str:
        label = truth_of_image(image_ref)
        if self.mistakes and self.rng.random() < self.mistakes:
            self.wrong += 1
            label = (label + self.rng.randrange(1, 10)) % 10
        return str(label)

    def run(self):
        while not self.stop.wait(0.5):
            if not self.enabled.is_set():
                continue
            try:
                for project in self.api.call("GET", "/api/projects")["results"]:
                    tasks = self.api.call(
                        "GET", f"/api/tasks?project={project['id']}&fields=all&page_size=1000"
                    )
                    for task in tasks["tasks"]:
                        if task.get("total_annotations"):
                            continue
                        result = [{"from_name": "choice", "to_name": "image", "type": "choices",
                                   "value": {"choices": [self.answer(task["data"]["image"])]}}]  # fmt: skip
                        self.api.call("POST", f"/api/tasks/{task['id']}/annotations",
                                      {"result": result, "was_cancelled": False})  # fmt: skip
                        self.answered += 1
            except Exception:  # noqa: BLE001 - Label Studio busy: next round
                pass
