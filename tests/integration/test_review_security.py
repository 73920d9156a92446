"""Security of the review UI: sign-in everywhere, CSRF on every change, escaped names, a confined image proxy."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from flask import Flask

from infra.clients import minio_client
from infra.settings import Settings
from tests.review_ui_support import PASSWORD, FlaggedImages, SignedIn, add_operator, photo, wait_until

MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def operator(app: Flask, deployment: Settings) -> SignedIn:
    return SignedIn(app, add_operator(deployment, f"sec-{uuid.uuid4().hex[:6]}"))


@pytest.fixture(scope="module")
def item(operator: SignedIn, flagged: FlaggedImages) -> dict:
    flagged.publish([flagged.event(4242, camera="cam-sec")])
    wait_until(lambda: operator.get("/api/ood?camera=cam-sec").json["total"] == 1, 30, "the projection")
    return operator.get("/api/ood?camera=cam-sec").json["items"][0]


def test_without_a_session_pages_redirect_and_the_api_answers_401(app: Flask, item: dict) -> None:
    anonymous = app.test_client()
    for path in ("/", "/queue", f"/review/{item['id']}", "/classes", "/import", "/counts", "/api",
                 item["image_url"], item["thumbnail_url"]):
        answer = anonymous.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/login")
    for method, path in (("get", "/api/ood"), ("get", f"/api/ood/{item['id']}"), ("get", "/api/classes"),
                         ("get", "/api/counts"), ("get", "/api/counts/history"), ("get", "/api/outbox"),
                         ("post", f"/api/ood/{item['id']}/label"), ("post", "/api/undo"),
                         ("post", "/api/classes"), ("post", "/api/import")):
        answer = getattr(anonymous, method)(path, json={})
        assert answer.status_code == 401, path
        assert "sign in" in answer.json["error"]


def test_sign_in_needs_the_right_password_and_sets_a_protected_cookie(app: Flask, deployment: Settings) -> None:
    name = add_operator(deployment, f"cookie-{uuid.uuid4().hex[:6]}")
    client = app.test_client()
    page = client.get("/login?next=/counts")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    wrong = client.post("/login", data={"username": name, "password": "not it at all", "csrf_token": token})
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    unknown = client.post("/login", data={"username": "nobody", "password": PASSWORD, "csrf_token": token})
    assert unknown.status_code == 401
    right = client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token,
                                        "next": "//evil.example/steal"})
    assert right.status_code == 302 and right.headers["Location"] == "/queue"  # no open redirect
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/queue").status_code == 200
    signed_out = client.post("/logout", data={"csrf_token": client.get("/api/session").json["csrf_token"]})
    assert signed_out.status_code == 302 and client.get("/queue").status_code == 302


def test_every_state_change_needs_the_csrf_token(app: Flask, operator: SignedIn, item: dict) -> None:
    action = {"label": "glass", "action_id": str(uuid.uuid4())}
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        for path, body in ((f"/api/ood/{item['id']}/label", action), ("/api/undo", action),
                           ("/api/classes", {"name": "Sneaky"}), (f"/api/ood/{item['id']}/discard", action)):
            answer = operator.client.post(path, json=body, headers=headers)
            assert answer.status_code == 400, path
            assert "CSRF token missing or invalid" in answer.json["error"]
    form = operator.client.post("/classes", data={"name": "Sneaky"})
    assert form.status_code == 400 and "CSRF" in form.text
    anonymous = app.test_client()
    login = anonymous.post("/login", data={"username": "x", "password": "y"})
    assert login.status_code == 400
    assert operator.get(f"/api/ood/{item['id']}").json["status"] == "pending"
    assert "Sneaky" not in [c["name"] for c in operator.get("/api/classes").json["classes"]]


def test_a_class_name_with_markup_renders_as_text(operator: SignedIn, item: dict) -> None:
    created = operator.post("/api/classes", json={"name": MARKUP})
    assert created.status_code == 201, created.json
    labelled = operator.act(f"/api/ood/{item['id']}/label", label=MARKUP)
    assert labelled["label"] == MARKUP
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    for path in ("/classes", f"/review/{item['id']}", "/queue?status=all&camera=cam-sec", "/import"):
        page = operator.get(path).text
        assert '<script>alert("x")' not in page and "<img src=x" not in page, path
        assert escaped in page or "\\u003cscript\\u003e" in page, path
    assert "default-src 'self'" in operator.get("/classes").headers["Content-Security-Policy"]
    operator.act("/api/undo")


def test_the_image_proxy_serves_only_the_images_bucket(operator: SignedIn, item: dict, deployment: Settings,
                                                        flagged: FlaggedImages) -> None:
    shown = operator.get(item["image_url"])
    assert shown.status_code == 200 and shown.mimetype == "image/jpeg"
    assert "immutable" in shown.headers["Cache-Control"] and shown.headers["X-Content-Type-Options"] == "nosniff"
    assert operator.get(item["image_url"], headers={"If-None-Match": f'"{item["image"]["sha256"]}"'}).status_code == 304
    thumb = operator.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg" and len(thumb.data) < len(shown.data) * 4

    # An object with an image-like key that exists only in another bucket stays out of reach.
    storage = minio_client(deployment)
    data = photo(31337)
    secret_key = f"images/{'e' * 64}.jpg"
    storage.put_object(deployment.bucket_models, secret_key, io.BytesIO(data), len(data))
    storage.put_object(deployment.bucket_models, "secret.txt", io.BytesIO(b"model secret"), 12)
    try:
        sha = item["image"]["sha256"]
        for path in (f"/images/{secret_key}", f"/images/../{deployment.bucket_models}/secret.txt",
                     f"/images/%2E%2E/{deployment.bucket_models}/secret.txt",
                     f"/images/images/..%2F..%2F{deployment.bucket_models}%2Fsecret.txt",
                     f"/images/images/{sha}.jpg/../../../{deployment.bucket_models}/secret.txt",
                     f"/images/{deployment.bucket_models}/secret.txt", "/images/secret.txt",
                     f"/images/images/{sha}.jpg%00.html", f"/thumbnails/{deployment.bucket_models}/secret.txt"):
            answer = operator.get(path)
            assert answer.status_code == 404, path
            assert b"model secret" not in answer.data
    finally:
        storage.remove_object(deployment.bucket_models, secret_key)
        storage.remove_object(deployment.bucket_models, "secret.txt")


def test_file_names_of_imports_render_as_text(operator: SignedIn) -> None:
    name = f"Escaped {uuid.uuid4().hex[:4]}"
    operator.post("/api/classes", json={"name": name})
    page = operator.post("/import", data={"files": [(io.BytesIO(b"plain text"), "<i>evil</i>.jpg")], "label": name,
                                          "csrf_token": operator.token}, content_type="multipart/form-data")
    assert page.status_code == 200
    assert "&lt;i&gt;evil&lt;/i&gt;.jpg" in page.text and "<i>evil</i>" not in page.text
    assert "refused" in page.text
