"""Push an exported directory to the Hugging Face hub (huggingface_hub's own API; the token comes from the
environment or the user's login, never from a config)."""
from __future__ import annotations

from pathlib import Path


def push_directory(directory: Path, repo_id: str, *, private: bool = True, api=None) -> str:
    from huggingface_hub import HfApi

    api = api or HfApi()
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(directory),
                             commit_message="embedgrid export")
    return str(getattr(info, "commit_url", info))
