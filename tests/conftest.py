import os

# No test may reach a remote host: huggingface_hub stays offline unless a test points it at its local server.
os.environ["HF_HUB_OFFLINE"] = "1"
# The sources' own code checks the ImageNet weights' conversions: Keras 3 runs on torch (no TensorFlow here).
os.environ.setdefault("KERAS_BACKEND", "torch")
# Converted weights and cached accuracy measurements go to this session's own folder: a test measures,
# and never reads what a developer's earlier runs left in ~/.cache/lightnets.
import tempfile  # noqa: E402

os.environ["LIGHTNETS_CACHE"] = tempfile.mkdtemp(prefix="lightnets-test-cache-")
# backend="auto" is measured per model, and never cached on a machine as busy as a test run: pin it to the
# accuracy pass's fastest path here (OpenVINO at batch 100) so every test does not time five backends.
# tests/deploy/test_auto_backend.py unsets it to test the measurement itself.
os.environ["LIGHTNETS_AUTO_BACKEND"] = "openvino"

import pytest  # noqa: E402
import torch  # noqa: E402

# Two cores on CI, shared by pytest-xdist's workers: each worker takes its share of the cores (at most two), so
# torch never oversubscribes them; an explicit OMP_NUM_THREADS wins.
if "OMP_NUM_THREADS" not in os.environ:
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _workers)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Batches of tiny (28-pixel) images: a second thread only adds sync overhead (10x slower, or stalls, on a
    busy 2-core box). A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def umask_027():
    """A umask other than the usual 022, so that permissions that follow it are told from fixed ones."""
    old = os.umask(0o027)
    yield
    os.umask(old)


def pytest_collection_modifyitems(config, items):
    """The slow tests first, each group in its collection order: with two workers taking tests from one queue
    (pytest-xdist's worksteal), a long test started near the end keeps one worker busy while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
