"""mkdocs hooks (``hooks:`` in mkdocs.yml): serve the measured plots of ``results/`` to the docs site.

mkdocs serves only files under ``docs/``; rather than keep copies of the plots there, each
``results/<file>.png`` is added to the site as ``assets/results/<file>.png``, so a page links
``![...](assets/results/zoo.png)`` (from a page in a subfolder: ``../assets/results/zoo.png``) and
``mkdocs build --strict`` checks that the link resolves.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parent.parent / "results"


def on_files(files, config):
    for path in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"assets/results/{path.name}", abs_src_path=str(path)))
    return files
