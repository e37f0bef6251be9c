"""Uploading a weight folder to the Hugging Face Hub."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ..pretrained.manifest import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME

__all__ = ["push_to_hub"]

PathLike = Union[str, Path]


def push_to_hub(directory: PathLike, repo_id: str, token: Optional[str] = None, private: bool = False,
                commit_message: str = "Upload lightnets weights") -> str:
    """Upload a Hub-layout folder to the model repo ``repo_id`` (created if needed); returns the commit URL.

    >>> push_to_hub("no/such/folder", "org/name")
    Traceback (most recent call last):
    ...
    ValueError: no/such/folder is not a Hub-layout folder: model.safetensors is missing (write it with save_pretrained)
    """
    directory = Path(directory)
    for required in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):
        if not (directory / required).is_file():
            raise ValueError(
                f"{directory} is not a Hub-layout folder: {required} is missing (write it with save_pretrained)"
            )
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(directory), repo_id=repo_id, repo_type="model", commit_message=commit_message
    )
    return str(commit.commit_url)
