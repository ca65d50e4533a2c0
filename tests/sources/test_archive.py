"""Image archives: `docker save` / oci-archive tarballs and OCI layouts, built by real umoci and skopeo (architecture §6)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from admission.errors import InputError
from admission.sources import archive
from tests.images import oci

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real image (umoci), written as an OCI layout, a docker-archive and an oci-archive (skopeo)."""
    if not oci.have_tools():
        pytest.fail("umoci and skopeo are required; `make test` installs them")
    root = tmp_path_factory.mktemp("archives")
    layout = root / "layout"
    src = oci.build(layout, "app", user="1001", labels={"org.example.team": "payments"}, env=["MODE=prod"],
                    exposed_ports=["8080/tcp"], history=("umoci config", "RUN make # buildkit"),
                    files={"/etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
    oci.build(layout, "other", user="nobody")
    docker_tar = root / "app-docker.tar"
    _skopeo("copy", "--quiet", "--additional-tag", "example.com/app:latest", src,
            f"docker-archive:{docker_tar}:example.com/app:1.4")
    oci_tar = root / "app-oci.tar"
    oci.copy(src, f"oci-archive:{oci_tar}:example.com/app:1.4")
    untagged = root / "untagged.tar"
    oci.copy(src, f"docker-archive:{untagged}")
    return {"layout": layout, "docker": docker_tar, "oci": oci_tar, "untagged": untagged}


def _skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _by_name(workloads: list[Any]) -> dict[str, Any]:
    return {w.name: w for w in workloads}


# ---------------------------------------------------------------- recognition


def test_real_archives_and_layouts_are_recognised_by_content_not_name(built: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "image.txt"
    shutil.copy(built["docker"], renamed)
    assert archive.is_archive(str(renamed))
    assert archive.is_archive(str(built["oci"]))
    assert archive.is_archive(str(built["layout"]))
    fake = tmp_path / "fake.tar"
    fake.write_text("services:\n  web:\n    image: nginx\n" * 40)
    assert not archive.is_archive(str(fake))
    plain_dir = tmp_path / "dir"
    (plain_dir / "blobs").mkdir(parents=True)
    (plain_dir / "index.json").write_text("{}")
    assert not archive.is_archive(str(plain_dir)), "a directory is a layout only with an oci-layout file"


def test_an_all_zero_block_is_not_taken_for_a_tar_header(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(4096))
    assert not archive.is_archive(str(zeros))


# ---------------------------------------------------------------- docker save


def test_docker_archive_yields_one_image_per_repo_tag_with_its_config(built: dict[str, Path]) -> None:
    images = _by_name(archive.load(str(built["docker"]), display="app-docker.tar"))
    assert set(images) == {"example.com/app:1.4", "example.com/app:latest"}
    image = images["example.com/app:1.4"]
    assert (image.source, image.kind, image.namespace, image.runtime) == ("image", "Image", None, False)
    config = image.containers[0].image_config
    assert config.reference == "example.com/app:1.4"
    assert config.user == "1001"
    assert config.env == ("MODE=prod",)
    assert config.exposed_ports == ("8080/tcp",)
    assert config.labels == {"org.example.team": "payments"}
    assert [h.created_by for h in config.history][-2:] == ["umoci config", "RUN make # buildkit"]
    assert config.history[0].created_by == "umoci insert" and not config.history[0].empty_layer
    assert (config.os, config.architecture) == ("linux", "amd64")
    assert config.digest is None, "a docker-archive records no manifest digest"
    member = image.origin.path
    assert member.endswith(".json") and config.config_digest == f"sha256:{member[:-5]}"
    assert image.origin.file == "app-docker.tar" and image.containers[0].origin == image.origin
    assert images["example.com/app:latest"].containers[0].image_config.config_digest == config.config_digest


def test_docker_archive_config_digest_is_the_sha256_of_the_config_member(built: dict[str, Path]) -> None:
    image = archive.load(str(built["docker"]), display="x")[0]
    with tarfile.open(built["docker"]) as tar:
        data = tar.extractfile(image.origin.path).read()  # type: ignore[union-attr]
    assert image.containers[0].image_config.config_digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_untagged_docker_archive_is_named_after_the_archive_file(built: dict[str, Path]) -> None:
    [image] = archive.load(str(built["untagged"]), display="untagged.tar")
    assert image.name == "untagged.tar"
    assert image.containers[0].name == "untagged.tar"


def test_newer_docker_save_with_index_json_takes_names_from_repo_tags_and_digests_from_the_index(
        built: dict[str, Path], tmp_path: Path) -> None:
    # Docker 25+ writes an OCI layout plus manifest.json whose Config/Layers point into blobs/.
    files = _tar_files(built["oci"])
    index = json.loads(files["index.json"])
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads(files["blobs/sha256/" + manifest_digest.split(":")[1]])
    config_member = "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]
    files["manifest.json"] = json.dumps([{"Config": config_member, "RepoTags": ["app:2.0"],
                                          "Layers": ["blobs/sha256/" + l["digest"].split(":")[1] for l in manifest["layers"]]}]).encode()
    path = _write_tar(tmp_path / "docker25.tar", files)
    [image] = archive.load(str(path), display="docker25.tar")
    assert image.name == "app:2.0"
    assert image.containers[0].image_config.digest == manifest_digest
    assert image.origin.path == config_member


# ---------------------------------------------------------------- OCI archives and layouts


def test_oci_archive_carries_the_manifest_digest_skopeo_reports(built: dict[str, Path]) -> None:
    [image] = archive.load(str(built["oci"]), display="app-oci.tar")
    assert image.name == "example.com/app:1.4"
    expected = _skopeo("inspect", "--format", "{{.Digest}}", f"oci-archive:{built['oci']}").strip()
    config = image.containers[0].image_config
    assert config.digest == expected
    assert image.origin.path == "blobs/sha256/" + config.config_digest.split(":")[1]
    assert config.user == "1001"


def test_oci_layout_directory_yields_every_tagged_image(built: dict[str, Path]) -> None:
    images = _by_name(archive.load(str(built["layout"]), display="layout"))
    # a bare-tag ref name is shown with the layout's name, so the object says which image it is
    assert set(images) == {"layout:app", "layout:other"}
    assert images["layout:other"].containers[0].image_config.user == "nobody"
    assert images["layout:app"].origin.file == "layout"


@pytest.fixture(scope="module")
def multi(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout whose one tag is an index: amd64 and arm64 images plus a BuildKit-style attestation manifest."""
    root = tmp_path_factory.mktemp("multi")
    layout = root / "layout"
    oci.build(layout, "amd64", user="1001", architecture="amd64")
    oci.build(layout, "arm64", user="2002", architecture="arm64")
    descs = {d["annotations"]["org.opencontainers.image.ref.name"]: d
             for d in json.loads((layout / "index.json").read_text())["manifests"]}
    statement = _put_blob(layout, {"_type": "https://in-toto.io/Statement/v0.1", "subject": []},
                          media="application/vnd.in-toto+json")
    attestation = _put_blob(layout, {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": statement, "layers": []})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**_plain(descs["amd64"]), "platform": {"os": "linux", "architecture": "amd64"}},
        {**_plain(descs["arm64"]), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {**attestation, "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                         "vnd.docker.reference.digest": descs["amd64"]["digest"]}},
    ]}
    index_desc = _put_blob(layout, index)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {**index_desc, "annotations": {"org.opencontainers.image.ref.name": "example.com/multi:1"}}]}))
    return layout


def test_multi_platform_index_picks_the_requested_platform(multi: Path) -> None:
    [amd] = archive.load(str(multi), display="multi")
    [arm] = archive.load(str(multi), display="multi", platform="linux/arm64")
    assert (amd.name, amd.containers[0].image_config.architecture, amd.containers[0].image_config.user) == \
        ("example.com/multi:1", "amd64", "1001")
    assert (arm.containers[0].image_config.architecture, arm.containers[0].image_config.user) == ("arm64", "2002")
    assert amd.containers[0].image_config.digest != arm.containers[0].image_config.digest


def test_arm64_without_variant_matches_the_v8_entry(multi: Path) -> None:
    [arm] = archive.load(str(multi), display="multi", platform="linux/arm64/v8")
    assert arm.containers[0].image_config.user == "2002"


def test_a_platform_the_index_lacks_is_an_input_error_listing_what_it_offers(multi: Path) -> None:
    with pytest.raises(InputError) as err:
        archive.load(str(multi), display="multi", platform="linux/s390x")
    assert "linux/s390x" in err.value.message and "linux/amd64" in err.value.message
    assert "linux/arm64/v8" in err.value.message and "unknown" not in err.value.message
    assert err.value.file == "multi" and err.value.path.startswith("blobs/sha256/")


def test_nested_indexes_are_followed_to_the_manifest(multi: Path, tmp_path: Path) -> None:
    layout = tmp_path / "nested"
    shutil.copytree(multi, layout)
    outer = json.loads((layout / "index.json").read_text())["manifests"][0]
    wrapper = _put_blob(layout, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [_plain(outer)]})
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {**wrapper, "annotations": {"org.opencontainers.image.ref.name": "nested:1"}}]}))
    [arm] = archive.load(str(layout), display="nested", platform="linux/arm64")
    assert (arm.name, arm.containers[0].image_config.architecture) == ("nested:1", "arm64")


def test_multi_platform_oci_archive_written_by_skopeo_all(multi: Path, tmp_path: Path) -> None:
    target = tmp_path / "multi.tar"
    oci.copy(f"oci:{multi}:example.com/multi:1", f"oci-archive:{target}:example.com/multi:1", all_images=True)
    [arm] = archive.load(str(target), display="multi.tar", platform="linux/arm64")
    assert arm.containers[0].image_config.user == "2002"


def test_indexes_nested_past_the_limit_are_refused(multi: Path, tmp_path: Path) -> None:
    layout = tmp_path / "deep"
    shutil.copytree(multi, layout)
    desc = _plain(json.loads((layout / "index.json").read_text())["manifests"][0])
    for _ in range(archive.MAX_DEPTH + 1):
        desc = _put_blob(layout, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]})
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    with pytest.raises(InputError, match="nest too deep"):
        archive.load(str(layout), display="deep")


def test_an_index_of_artifacts_only_names_no_image(tmp_path: Path) -> None:
    layout = tmp_path / "artifacts"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    config = _put_blob(layout, {"apiVersion": "v2", "name": "chart"}, media="application/vnd.cncf.helm.config.v1+json")
    manifest = _put_blob(layout, {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []})
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    with pytest.raises(InputError, match="names no container image"):
        archive.load(str(layout), display="artifacts")


# ---------------------------------------------------------------- streaming: layers are never read


def _read_bytes_so_far() -> int:
    with open("/proc/self/io", encoding="ascii") as fh:
        return int(next(line for line in fh if line.startswith("rchar:")).split()[1])


def test_a_2_gib_layer_is_skipped_by_seeking_not_read(tmp_path: Path) -> None:
    if not os.path.exists("/proc/self/io"):
        pytest.skip("needs Linux /proc/self/io to count bytes read")
    config = json.dumps({"os": "linux", "architecture": "amd64", "config": {"User": "1001"}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    path = tmp_path / "big.tar"
    with open(path, "wb") as fh:
        layer = tarfile.TarInfo("0000/layer.tar")
        layer.size = 2 * 1024**3
        fh.write(layer.tobuf(format=tarfile.PAX_FORMAT))
        fh.seek(layer.size, os.SEEK_CUR)  # a hole: the file is sparse on disk
        with tarfile.open(fileobj=_Append(fh), mode="w|") as tail:
            _add(tail, config_name, config)
            _add(tail, "manifest.json", json.dumps([{"Config": config_name, "RepoTags": ["big:1"],
                                                      "Layers": ["0000/layer.tar"]}]).encode())
    assert path.stat().st_size > 2 * 1024**3
    before = _read_bytes_so_far()
    [image] = archive.load(str(path), display="big.tar")
    read = _read_bytes_so_far() - before
    assert image.containers[0].image_config.user == "1001"
    assert read < 1024 * 1024, f"read {read} bytes of a 2 GiB archive"


class _Append(io.RawIOBase):
    """Lets tarfile's stream writer continue an open file at its current position."""

    def __init__(self, fh: io.BufferedWriter) -> None:
        self.fh = fh

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self.fh.write(data)


# ---------------------------------------------------------------- broken archives name archive and member


def test_a_text_file_is_not_a_readable_tar(tmp_path: Path) -> None:
    path = tmp_path / "notes.tar"
    path.write_text("hello\n" * 200)
    with pytest.raises(InputError) as err:
        archive.load(str(path), display="notes.tar")
    assert err.value.file == "notes.tar" and "not a readable tar archive" in err.value.message


def test_a_tar_without_manifest_or_index_is_not_an_image_archive(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "src.tar", {"src/main.py": b"print(1)\n"})
    with pytest.raises(InputError, match="neither manifest.json .* nor index.json"):
        archive.load(str(path), display="src.tar")


def test_manifest_pointing_at_a_missing_config_names_both(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "x.tar", {"manifest.json": json.dumps([{"Config": "abc.json", "RepoTags": ["x:1"]}]).encode()})
    with pytest.raises(InputError) as err:
        archive.load(str(path), display="x.tar")
    assert "abc.json" in err.value.message and err.value.path == "manifest.json" and err.value.file == "x.tar"


def test_a_config_that_does_not_match_its_digest_is_refused(built: dict[str, Path], tmp_path: Path) -> None:
    files = _tar_files(built["docker"])
    manifest = json.loads(files["manifest.json"])
    member = manifest[0]["Config"]
    files[member] = files[member].replace(b'"1001"', b'"0"')
    path = _write_tar(tmp_path / "tampered.tar", files)
    with pytest.raises(InputError) as err:
        archive.load(str(path), display="tampered.tar")
    assert err.value.path == member and "does not match its digest" in err.value.message


def test_an_oci_blob_that_does_not_match_its_digest_is_refused(built: dict[str, Path], tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(built["layout"], layout)
    image = _by_name(archive.load(str(layout), display="l"))[f"{layout.name}:app"]
    blob = layout / image.origin.path
    blob.write_bytes(blob.read_bytes().replace(b'"1001"', b'"0000"'))
    with pytest.raises(InputError) as err:
        archive.load(str(layout), display="l")
    assert err.value.path == image.origin.path and "does not match its digest" in err.value.message


def test_a_member_over_its_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "huge.tar", {"manifest.json": b"[" + b" " * archive.MANIFEST_CAP + b"]"})
    with pytest.raises(InputError) as err:
        archive.load(str(path), display="huge.tar")
    assert err.value.path == "manifest.json" and "over the 4 MiB cap" in err.value.message


def test_a_config_over_8_mib_is_refused(tmp_path: Path) -> None:
    config = b'{"os":"linux","pad":"' + b"x" * archive.CONFIG_CAP + b'"}'
    name = hashlib.sha256(config).hexdigest() + ".json"
    path = _write_tar(tmp_path / "fat.tar", {name: config, "manifest.json": json.dumps([{"Config": name}]).encode()})
    with pytest.raises(InputError) as err:
        archive.load(str(path), display="fat.tar")
    assert err.value.path == name and "over the 8 MiB cap" in err.value.message


def test_an_oversized_pax_header_is_refused_not_read_into_memory(tmp_path: Path) -> None:
    path = tmp_path / "pax.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.pax_headers = {"comment": "x" * (archive.EXT_HEADER_CAP + 1)}
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    with pytest.raises(InputError, match="extended tar header"):
        archive.load(str(path), display="pax.tar")


def test_path_traversal_members_are_never_looked_up(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "evil.tar", {"../manifest.json": b"[]", "/index.json": b"{}"})
    with pytest.raises(InputError, match="neither manifest.json"):
        archive.load(str(path), display="evil.tar")
    assert not (tmp_path.parent / "manifest.json").exists()


def test_a_config_reference_outside_the_archive_is_refused(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "evil.tar", {"manifest.json": json.dumps([{"Config": "../../etc/passwd"}]).encode()})
    with pytest.raises(InputError) as err:
        archive.load(str(path), display="evil.tar")
    assert "points outside the archive" in err.value.message and err.value.path == "manifest.json"


def test_a_truncated_archive_names_the_member_it_cut(built: dict[str, Path], tmp_path: Path) -> None:
    files = _tar_files(built["docker"])
    member = json.loads(files["manifest.json"])[0]["Config"]
    ordered = {"manifest.json": files["manifest.json"], member: files[member]}
    whole = _write_tar(tmp_path / "whole.tar", ordered).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: 3 * 512 + len(files[member]) // 2])  # mid-way through the config's data
    with pytest.raises(InputError) as err:
        archive.load(str(cut), display="cut.tar")
    assert err.value.file == "cut.tar" and member in err.value.message


def test_invalid_json_names_the_member(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "x.tar", {"manifest.json": b"[{"})
    with pytest.raises(InputError) as err:
        archive.load(str(path), display="x.tar")
    assert err.value.path == "manifest.json" and "not valid JSON" in err.value.message


def test_a_wrongly_typed_config_field_names_the_field(tmp_path: Path) -> None:
    config = json.dumps({"os": "linux", "config": {"User": 0}}).encode()
    name = hashlib.sha256(config).hexdigest() + ".json"
    path = _write_tar(tmp_path / "x.tar", {name: config, "manifest.json": json.dumps([{"Config": name}]).encode()})
    with pytest.raises(InputError) as err:
        archive.load(str(path), display="x.tar")
    assert "config.User is a int, expected a str" in err.value.message and err.value.path == name


def test_a_symlinked_config_is_followed_inside_the_archive(tmp_path: Path) -> None:
    config = json.dumps({"os": "linux", "config": {"User": "7"}}).encode()
    digest = hashlib.sha256(config).hexdigest()
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, f"blobs/sha256/{digest}", config)
        link = tarfile.TarInfo(f"{digest}.json")
        link.type, link.linkname = tarfile.SYMTYPE, f"blobs/sha256/{digest}"
        tar.addfile(link)
        _add(tar, "manifest.json", json.dumps([{"Config": f"{digest}.json", "RepoTags": ["l:1"]}]).encode())
    [image] = archive.load(str(path), display="links.tar")
    assert image.containers[0].image_config.user == "7"


def test_a_fifo_in_a_layout_is_an_error_not_a_hang(built: dict[str, Path], tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(built["layout"], layout)
    image = _by_name(archive.load(str(layout), display="l"))[f"{layout.name}:app"]
    blob = layout / image.origin.path
    blob.unlink()
    os.mkfifo(blob)
    with pytest.raises(InputError, match="not a regular file"):
        archive.load(str(layout), display="l")


def test_an_invalid_platform_is_an_input_error(built: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="invalid platform"):
        archive.load(str(built["layout"]), display="l", platform="amd64")


# ---------------------------------------------------------------- helpers


def _plain(desc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: desc[k] for k in ("mediaType", "digest", "size") if k in desc}


def _put_blob(layout: Path, doc: Mapping[str, Any], *, media: str | None = None) -> dict[str, Any]:
    data = json.dumps(doc).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media or doc.get("mediaType", OCI_MANIFEST), "digest": f"sha256:{digest}", "size": len(data)}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_tar(path: Path, files: Mapping[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return path


def _tar_files(path: Path) -> dict[str, bytes]:
    """Regular members of a small archive (symlinked layers become copies)."""
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for info in _regular_or_links(tar):
            data = tar.extractfile(info)
            if data is not None:
                out[info.name] = data.read()
    return out


def _regular_or_links(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    return (m for m in tar.getmembers() if m.isreg() or m.issym())
