"""Checkpoints read where they live: Hub revisions (through huggingface_hub,
against a Hub-compatible server on 127.0.0.1, tests/hubserver.py) and object
stores (through fsspec: s3fs against moto's S3 server). The servers count the
bytes they send: a figure receives the headers and the tensors it draws,
and nothing the second time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import checkpoints as ck
import support
from hubserver import Hub

pytest.importorskip("huggingface_hub")


@pytest.fixture(autouse=True)
def _numpy_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy path of the kernel (the same bits): no numba compile per test."""
    monkeypatch.setenv("FIGSPEC_KERNEL", "numpy")


@pytest.fixture
def hub(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> Iterator[Hub]:
    """A Hub on 127.0.0.1, as the user's HF_ENDPOINT; an empty hub cache, no token."""
    with Hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hfcache")))
        monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hfhome")))
        monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2")
        for variable in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(variable, raising=False)
        yield server


def publish(hub: Hub, project: Path, **pair) -> dict[str, Path]:
    """A pair made locally, published as Org/tuned and Org/base (branch main)."""
    tuned, base, _ = ck.make_pair(project / "ckpt", shape=(32, 48), **pair)
    for repo, folder in (("Org/tuned", tuned), ("Org/base", base)):
        hub.add(repo, {f.name: f.read_bytes() for f in folder.iterdir()})
    return {"tuned": tuned, "base": base}


def spec(project: Path, tuned: str = "hf:Org/tuned", base: str = "hf:Org/base",
         metric: str = "relative_change", name: str = "fig", extra: str = "") -> Path:
    return support.write(project / "specs" / f"{name}.yaml",
                         f"data:\n  checkpoint: {tuned}\n  base: {base}\n  metric: {metric}\n"
                         f"modules: qwen2\n{extra}")


def drawn_bytes(folders: dict[str, Path]) -> int:
    """What a figure of the pair needs: its index, each shard's header, and the
    bytes of the attention and MLP weights of every layer (no embedding, no lm_head)."""
    from figspec.sources.safetensors import open_checkpoint

    indexes = {(f / "model.safetensors.index.json").read_bytes() for f in folders.values()
               if (f / "model.safetensors.index.json").exists()}
    total = sum(map(len, indexes))  # read once for every side that holds it
    for folder in folders.values():
        for shard in folder.glob("*.safetensors"):
            total += 8 + int.from_bytes(shard.read_bytes()[:8], "little")
        total += sum(t.end - t.start for n, t in open_checkpoint(folder).items()
                     if ".layers." in n)
    return total


def sums(project: Path, name: str = "fig") -> dict:
    data = json.loads((project / "specs" / f"{name}.numbers.json").read_text())
    return {n: t["sums"] for p in data["pairs"] for n, t in p["tensors"].items()}


def test_a_hub_pair_is_read_in_place_once(project: Path, run, hub: Hub):
    folders = publish(hub, project, shards=2)
    spec(project, "../ckpt/tuned", "../ckpt/base")
    assert run("build")[0] == 0
    local = sums(project)
    spec(project)
    code, _, err = run("build")
    assert code == 0, err
    assert sums(project) == local  # the same sums, bit for bit
    asked = [r for r in hub.resolves()]
    assert len(asked) == len(set(asked)), sorted(asked)
    assert hub.sent == drawn_bytes(folders)  # headers and drawn tensors, nothing else
    assert all(rng for _, rng in hub.resolves() if "index.json" not in _)
    committed = (project / "specs" / "fig.numbers.json").read_text()
    assert "hf:Org/tuned/model-00001-of-00002.safetensors" in committed
    sent = hub.sent
    spec(project, extra="title: again\n")  # rebuilt: sums and headers from the cache
    assert run("build")[0] == 0
    spec(project, metric="cosine", name="other")  # another figure of the same content
    assert run("build")[0] == 0
    assert hub.sent == sent
    code, out, _ = run("status")
    assert code == 0 and "stale" not in out


def test_a_moved_branch_makes_the_figure_stale_and_status_works_offline(
        project: Path, run, hub: Hub, monkeypatch: pytest.MonkeyPatch):
    folders = publish(hub, project)
    spec(project)
    assert run("build")[0] == 0
    files = {f.name: f.read_bytes() for f in folders["base"].iterdir()}
    commit = hub.add("Org/tuned", files)  # main now holds other weights
    code, out, _ = run("status")
    assert f"hf:Org/tuned is now {commit[:12]}" in out, out
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.repos.clear()  # offline: nothing is asked; what was known stands
    code, out, err = run("status")
    assert code == 0 and "up to date" in out, out + err


@pytest.mark.parametrize("fault, said", [
    (("status", 404, 1), None),
    (("timeout", 3, 99), "no answer within 1 s"),
    (("short", 0, 99), "received"),
    (("changed", 0, 1), "changed while it was read"),
    (("redirects", 0, 1), "too many redirects"),
    (("no-range", 0, 99), "the server sent the whole file"),
    (("status", 503, 99), "HTTP 503 (4 attempts)"),
])
def test_a_failed_read_is_a_located_diagnostic(project: Path, run, hub: Hub, fault, said,
                                               monkeypatch: pytest.MonkeyPatch):
    publish(hub, project)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "1")  # whole seconds: huggingface_hub 2.3
    spec(project)
    hub.fault = fault  # the first range request fails: a header's (`check` reads headers)
    code, _, err = run("check")
    assert "Traceback" not in err
    if said is None:  # a fault that happens once is retried... unless it is a 404
        assert code == 1 and "is not there (HTTP 404)" in err
        return
    assert code == 1 and "specs/fig.yaml:" in err and said in err, err


def test_a_variable_huggingface_hub_refuses_at_import_is_a_located_diagnostic(
        project: Path, hub: Hub):
    """huggingface_hub reads HF_* variables when it is imported and raises on
    some (2.3 takes HF_HUB_DOWNLOAD_TIMEOUT as whole seconds): the figure's
    line, what was refused, where to correct it; in a child, so that this
    process's huggingface_hub, imported already, is not the one asked."""
    publish(hub, project)
    spec(project)
    env = {**os.environ, "HF_HUB_DOWNLOAD_TIMEOUT": "ten"}
    p = subprocess.run([sys.executable, "-m", "figspec", "check"], cwd=project, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "specs/fig.yaml:" in p.stderr and "huggingface_hub cannot be imported" in p.stderr
    assert "HF_HUB_DOWNLOAD_TIMEOUT in whole seconds" in p.stderr, p.stderr


def test_a_transient_failure_is_retried(project: Path, run, hub: Hub):
    publish(hub, project)
    spec(project)
    hub.fault = ("status", 503, 2)
    code, _, err = run("build")
    assert code == 0, err


def test_missing_repositories_revisions_and_logins_are_said(project: Path, run, hub: Hub,
                                                            monkeypatch: pytest.MonkeyPatch):
    publish(hub, project)
    spec(project, tuned="hf:Org/nothing")
    code, _, err = run("check")
    assert code == 1 and "hf:Org/nothing: the repository is not on the Hub" in err
    assert "hf auth login" in err and "Traceback" not in err
    spec(project, tuned="hf:Org/tuned@v9")
    code, _, err = run("check")
    assert code == 1 and "hf:Org/tuned@v9: no such revision" in err
    hub.repos["Org/tuned"].token = "hf_secret"
    spec(project)
    code, _, err = run("check")
    assert code == 1 and "HTTP 401" in err and "HF_TOKEN" in err
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    code, _, err = run("build")
    assert code == 0, err
    for written in (project / "out").rglob("*"):
        if written.is_file():
            assert b"hf_secret" not in written.read_bytes()
    assert "hf_secret" not in (project / "specs" / "fig.numbers.json").read_text()


def test_offline_a_hub_model_not_cached_says_how_to_get_it(project: Path, run, hub: Hub,
                                                           monkeypatch: pytest.MonkeyPatch):
    publish(hub, project)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec(project)
    code, _, err = run("check")
    assert code == 1 and "is not in the Hugging Face cache" in err and not hub.log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, str]]:
    """moto's S3 server on 127.0.0.1, as the endpoint of s3fs (credentials from
    the environment, as boto reads them)."""
    s3fs = pytest.importorskip("s3fs")
    s3fs.S3FileSystem.clear_instance_cache()  # one made for another test's server
    server_module = pytest.importorskip("moto.server")
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "s3cr3t-k3y",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url,
                 "AWS_ENDPOINT_URL_S3": url}.items():
        monkeypatch.setenv(k, v)
    import boto3

    client = boto3.client("s3", endpoint_url=url)
    client.create_bucket(Bucket="ckpts")
    try:
        yield client, url
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


def test_an_s3_pair_is_read_in_place(project: Path, run, s3):
    client, _ = s3
    tuned, base, _ = ck.make_pair(project / "ckpt", shape=(32, 48))
    for side, folder in (("tuned", tuned), ("base", base)):
        for f in folder.iterdir():
            client.put_object(Bucket="ckpts", Key=f"run/{side}/{f.name}", Body=f.read_bytes())
    spec(project, "../ckpt/tuned", "../ckpt/base")
    assert run("build")[0] == 0
    local = sums(project)
    spec(project, "s3://ckpts/run/tuned", "s3://ckpts/run/base")
    code, _, err = run("build")
    assert code == 0, err
    assert sums(project) == local
    text = (project / "specs" / "fig.numbers.json").read_text()
    assert "s3://ckpts/run/tuned/model.safetensors" in text and "s3cr3t" not in text
    spec(project, "s3://ckpts/run/nothing", "s3://ckpts/run/base")
    code, _, err = run("check")
    assert code == 1 and "s3://ckpts/run/nothing" in err and "Traceback" not in err
    assert "s3cr3t" not in err


def test_a_run_over_hub_branches(project: Path, run, hub: Hub):
    steps = sorted(ck.make_run(project / "ckrun", [1000, 2000, 4000]).iterdir())
    for step in steps:
        files = {f.name: f.read_bytes() for f in step.iterdir() if f.suffix == ".safetensors"}
        hub.add("Org/run", files, ref=f"step{step.name.rsplit('-', 1)[-1]}")
    last = {f.name: f.read_bytes() for f in steps[-1].iterdir() if f.suffix == ".safetensors"}
    hub.add("Org/run", last, ref="step5000", tag=True)  # the same weights uploaded again
    hub.add("Org/run", last, ref="main")
    base = steps[0].parent.parent / "base"
    hub.add("Org/base", {f.name: f.read_bytes() for f in base.iterdir()})
    support.write(project / "specs" / "fig.yaml", "data:\n  checkpoints: hf:Org/run@step*\n"
                  "  base: hf:Org/base\n  compare: previous\n  metric: relative_change\nx: step\nmodules: qwen2\n")
    code, _, err = run("build")
    assert code == 0, err
    assert "step 5000 is identical to step 4000" in err
    text = (project / "specs" / "fig.numbers.json").read_text()
    assert "hf:Org/run@step2000 against hf:Org/run@step1000" in text
    assert "hf:Org/run@main" not in text
    code, out, _ = run("status")
    assert "up to date" in out
    hub.add("Org/run", last, ref="step6000")  # a new branch: the figure is stale
    code, out, _ = run("status")
    assert "stale" in out and "hf:Org/run@step*" in out, out


def test_a_remote_reader_and_its_files_pickle_for_another_process(project: Path, hub: Hub):
    import pickle

    from figspec.sources.inplace import find
    from figspec.sources.remote import Reader

    folders = publish(hub, project)
    found = find("hf:Org/tuned")
    reader = Reader()
    assert reader.read(found.blobs[0], 0, 8)  # a client made here...
    again, blobs = pickle.loads(pickle.dumps((reader, found.blobs)))
    shard = (folders["tuned"] / "model.safetensors").read_bytes()
    assert again.read(blobs[0], 100, 164) == shard[100:164]  # ...and made again there


def test_a_checkpoint_on_a_web_server_is_read_in_place(project: Path, run, hub: Hub):
    pytest.importorskip("aiohttp")
    folders = publish(hub, project)
    spec(project, "../ckpt/tuned", "../ckpt/base")
    assert run("build")[0] == 0
    local = sums(project)
    address = f"{hub.url}/Org/{{}}/resolve/main/model.safetensors"
    spec(project, address.format("tuned"), address.format("base"))
    sent = hub.sent
    code, _, err = run("build")
    assert code == 0, err
    assert sums(project) == local
    assert hub.sent - sent == drawn_bytes(folders)


def _upload(client, project: Path) -> dict[str, Path]:
    tuned, base, _ = ck.make_pair(project / "ckpt", shape=(32, 48))
    for side, folder in (("tuned", tuned), ("base", base)):
        for f in folder.iterdir():
            client.put_object(Bucket="ckpts", Key=f"run/{side}/{f.name}", Body=f.read_bytes())
    return {"tuned": tuned, "base": base}


def test_a_store_file_replaced_between_its_header_and_its_tensors_is_said(
        project: Path, run, s3, monkeypatch: pytest.MonkeyPatch):
    from moto.s3.responses import S3Response

    client, _ = s3
    folders = _upload(client, project)
    shard = (folders["tuned"] / "model.safetensors").read_bytes()
    other = (folders["base"] / "model.safetensors").read_bytes()  # same size, same header
    header_end = 8 + int.from_bytes(shard[:8], "little")
    spec(project, "../ckpt/tuned", "../ckpt/base")
    assert run("build")[0] == 0
    local = sums(project)
    serve, replaced = S3Response._get_key, []

    def replacing(self, *args, **kwargs):  # at the server: the first tensor byte asked for
        asked = self.headers.get("Range", "bytes=0-").split("=")[1].split("-")[0]
        if not replaced and self.path.endswith("run/tuned/model.safetensors") and \
                int(asked) >= header_end:
            replaced.append(asked)
            self.backend.put_object("ckpts", "run/tuned/model.safetensors", other)
        return serve(self, *args, **kwargs)

    monkeypatch.setattr(S3Response, "_get_key", replacing)
    spec(project, "s3://ckpts/run/tuned", "s3://ckpts/run/base")
    code, _, err = run("build")
    assert replaced and code == 1, err
    assert "s3://ckpts/run/tuned/model.safetensors changed while it was read" in err, err
    assert "build again" in err and "specs/fig.yaml:" in err and "Traceback" not in err
    client.put_object(Bucket="ckpts", Key="run/tuned/model.safetensors", Body=shard)
    code, _, err = run("build")  # the first content again: no sum was kept from the failure
    assert code == 0, err
    assert sums(project) == local


def test_a_store_refusing_access_says_how_to_give_credentials(project: Path, run, s3):
    import urllib.request

    client, url = s3
    _upload(client, project)
    spec(project, "s3://ckpts/run/tuned", "s3://ckpts/run/base")

    def authenticate(count: str) -> None:  # moto's server API: check credentials from now on
        urllib.request.urlopen(urllib.request.Request(
            f"{url}/moto-api/reset-auth", data=count.encode(), method="POST",
            headers={"Content-Type": "text/plain"}))

    authenticate("0")  # the key of the environment is no user of moto's: 403
    try:
        code, _, err = run("check")
    finally:
        authenticate("inf")
    assert code == 1 and "s3://ckpts/run/tuned: access refused (the store answered 403)" in err
    assert "AWS_PROFILE" in err and "AWS_ACCESS_KEY_ID" in err and "~/.aws" in err, err
    assert "s3cr3t" not in err and "Traceback" not in err


def test_a_file_on_a_web_server_replaced_mid_read_is_said(project: Path, run, hub: Hub):
    pytest.importorskip("aiohttp")
    publish(hub, project)
    address = f"{hub.url}/Org/{{}}/resolve/main/model.safetensors"
    spec(project, address.format("tuned"), address.format("base"))
    hub.fault = ("changed", 0, 1)  # the first range asked is of another content: 412
    code, _, err = run("check")
    assert code == 1 and "changed while it was read" in err and "Traceback" not in err, err


def test_a_web_server_refusing_access_says_so_without_the_hub_s_login(project: Path, run,
                                                                       hub: Hub):
    pytest.importorskip("aiohttp")
    publish(hub, project)
    hub.repos["Org/tuned"].token = "hf_secret"
    address = f"{hub.url}/Org/{{}}/resolve/main/model.safetensors"
    spec(project, address.format("tuned"), address.format("base"))
    for command in ("check", "build"):
        code, _, err = run(command)
        assert code == 1 and "access refused (HTTP 401)" in err, err
        assert "hf auth login" not in err and "HF_TOKEN" not in err
        assert "signed address" in err and "Traceback" not in err
