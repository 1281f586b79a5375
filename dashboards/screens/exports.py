"""开放数据: data-sharing agreements, the export packages on disk and their expiry.

Packages are built by ``masking.export.build_package`` (CLI); here they are listed from
``<lake>/exports/<recipient>/<package>/manifest.json``, checked against their manifest
(SHA-256 of every file) and offered for download. An authorised recipient (third_party)
sees only the packages of their own recipient id.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import streamlit as st

from dashboards.common import page_context, show_table

AGREEMENTS_DIR = Path(__file__).resolve().parents[2] / "masking" / "agreements"
EXPIRING_DAYS = 30


def _today() -> date:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


def expiry_status(expires_on: date | None, today: date, signed_on: date | None = None) -> str:
    """有效 / 即将到期 / 已过期 / 未生效 for an agreement or package."""
    if expires_on is None:
        return "—"
    if signed_on is not None and signed_on > today:
        return "○ 未生效"
    if expires_on < today:
        return "● 已过期"
    if (expires_on - today).days <= EXPIRING_DAYS:
        return "▲ 即将到期"
    return "● 有效"


def agreement_files(lake_root: Path) -> list[Path]:
    folders = [AGREEMENTS_DIR, lake_root / "agreements"]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.yaml"))


def packages(exports: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(package folder, manifest) of every published package (temporaries skipped)."""
    out: list[tuple[Path, dict[str, Any]]] = []
    if not exports.is_dir():
        return out
    for manifest in sorted(exports.glob("*/*/manifest.json")):
        if any(part.startswith(".") for part in manifest.relative_to(exports).parts):
            continue
        try:
            out.append((manifest.parent, json.loads(manifest.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    return out


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.iterdir()):
            if file.is_file():
                zf.write(file, arcname=f"{folder.name}/{file.name}")
    return buffer.getvalue()


ctx = page_context("exports")
st.title("开放数据")
today = _today()
recipient = ctx.session.recipient if ctx.session.role == "third_party" else None
if ctx.session.role == "third_party":
    st.caption(f"授权接收方：{recipient or '（未绑定接收方）'} · 只显示本接收方的数据包")

# ------------------------------------------------------------------ agreements
st.header("数据共享协议")
rows: list[dict[str, Any]] = []
for path in agreement_files(ctx.lake.root):
    try:
        from masking.agreement import load_agreement

        a = load_agreement(path)
    except Exception as exc:  # a malformed file is shown, not fatal
        rows.append(
            {
                "协议编号": path.stem,
                "接收方": "—",
                "用途": f"无法读取：{str(exc).splitlines()[0]}",
                "签署方": "—",
                "到期日": None,
                "状态": "▲ 格式错误",
                "数据集数": None,
                "_recipient": "",
            }
        )
        continue
    rows.append(
        {
            "协议编号": a.id,
            "接收方": a.recipient.name_zh,
            "用途": a.purpose,
            "签署方": a.signed_by,
            "到期日": a.expires_on,
            "状态": expiry_status(a.expires_on, today, a.signed_on),
            "数据集数": len(a.datasets),
            "_recipient": a.recipient.id,
        }
    )
if recipient is not None or ctx.session.role == "third_party":
    rows = [r for r in rows if r["_recipient"] == recipient]
ctx.db.audit_read("file:agreements", len(rows))
if rows:
    frame = pl.DataFrame(rows).drop("_recipient")
    valid = sum(1 for r in rows if str(r["状态"]).endswith("有效"))
    a1, a2 = st.columns(2)
    a1.metric("协议数", f"{len(rows)} 份")
    a2.metric("有效协议", f"{valid} 份")
    show_table(frame, lights=True)
else:
    st.info("没有数据共享协议。")

# ------------------------------------------------------------------ packages
st.header("数据包")
found = packages(ctx.lake.exports)
if recipient is not None or ctx.session.role == "third_party":
    found = [(p, m) for p, m in found if (m.get("recipient") or {}).get("id") == recipient]
ctx.db.audit_read("file:exports", len(found))
if not found:
    st.info("还没有生成数据包（数据管理员用 `rainbow export` 按协议生成）。")
    st.stop()

from masking.export import verify_manifest  # noqa: E402  (only needed when packages exist)

table = []
for folder, manifest in found:
    expires = manifest.get("expires_on")
    expires_on = date.fromisoformat(expires) if expires else None
    damaged = verify_manifest(folder)
    datasets = manifest.get("datasets", {})
    table.append(
        {
            "数据包": manifest.get("package_id", folder.name),
            "接收方": (manifest.get("recipient") or {}).get("name_zh", folder.parent.name),
            "协议": manifest.get("agreement_id", ""),
            "生成时间": str(manifest.get("created_at", ""))[:16].replace("T", " "),
            "到期日": expires_on,
            "剩余天数": (expires_on - today).days if expires_on else None,
            "状态": expiry_status(expires_on, today),
            "数据集": "、".join(f"{k}（{v.get('rows', 0)}行）" for k, v in datasets.items()),
            "完整性": "● 完整" if not damaged else f"● {len(damaged)} 个文件与清单不符",
        }
    )
frame = pl.DataFrame(table)
expired = frame.filter(pl.col("状态").str.contains("已过期")).height
p1, p2 = st.columns(2)
p1.metric("数据包", f"{frame.height} 个")
p2.metric("已过期", f"{expired} 个")
if expired:
    st.warning("有数据包已超过协议到期日：请通知接收方删除，并在本地归档或清除。")
show_table(frame, lights=True)

st.subheader("下载数据包")
labels = {str(folder): f"{m.get('package_id', folder.name)}" for folder, m in found}
chosen = st.selectbox("选择数据包", list(labels), format_func=lambda k: labels[k], key="exp_pick")
folder = Path(chosen)
manifest = dict(found)[folder]
expires = manifest.get("expires_on")
if expires and date.fromisoformat(expires) < today:
    st.error("该数据包已过期，不再提供下载。")
else:
    data = _zip(folder)
    if st.download_button(
        "下载（ZIP：数据、数据字典、风险报告、清单）",
        data=data,
        file_name=f"{folder.name}.zip",
        mime="application/zip",
        key="exp_download",
    ):
        ctx.db.audit_read(f"export:{folder.parent.name}/{folder.name}", None, detail="download")
