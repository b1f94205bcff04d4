"""HTTP/JSON transcoding: the library server (tests/protos/http/library.proto,
tests/src/bin/library-server.rs) called with httpx over every kind of
google.api.http binding, and with grpcio over gRPC for the same calls: auth,
rate limits and validation answer alike on both surfaces."""

import base64
import importlib
import json
import re
import sys
import time

import grpc
import httpx
import jwt
import pytest

from conftest import REPO, run, start_greeter

SECRET = "library-secret-library-secret-0123456789"
PROTOS = REPO / "tests" / "protos" / "http"


def token(sub="ann"):
    claims = {"iss": "https://issuer.test", "aud": "library", "sub": sub, "exp": int(time.time()) + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


AUTH = {"Authorization": f"Bearer {token()}"}


@pytest.fixture(scope="module")
def library(binaries):
    served = start_greeter(binaries["plugin"].parent / "library-server", {"SVC_JWT_SECRET": SECRET})
    assert served.http, "the library server opens its HTTP/JSON listener"
    served.http_addr = served.http
    served.http = httpx.Client(base_url=f"http://{served.http_addr}", timeout=10)
    yield served
    served.http.close()
    served.stop()


@pytest.fixture(scope="module")
def pb(third_party, grpc_tools_include, tmp_path_factory):
    """Python stubs of library.proto (google.api comes from the installed
    googleapis-common-protos)."""
    out = tmp_path_factory.mktemp("library_py")
    r = run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            "-I", PROTOS, "-I", third_party, "-I", grpc_tools_include,
            f"--python_out={out}", f"--grpc_python_out={out}",
            "library.proto", "svc/options.proto", "buf/validate/validate.proto",
        ]
    )
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, str(out))
    return importlib.import_module("library_pb2"), importlib.import_module("library_pb2_grpc")


def create(library, shelf, book_id, **book):
    book.setdefault("title", f"Book {book_id}")
    r = library.http.post(f"/v1/shelves/{shelf}/books", params={"requestId": book_id}, json=book, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def status_of(response, http_code, grpc_code):
    assert response.status_code == http_code, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == grpc_code, body
    assert isinstance(body["message"], str) and isinstance(body.get("details", []), list)
    return body


def test_a_binding_with_a_body_field_a_query_parameter_and_well_known_types(library):
    book = create(
        library, 1, "dune", title="Dune", authors=["Frank Herbert"], pages="412", genre="GENRE_FICTION",
        published="1965-08-01T00:00:00Z", labels={"cover": "sand"},
    )
    assert book == {
        "name": "shelves/1/books/dune",
        "title": "Dune",
        "authors": ["Frank Herbert"],
        "pages": "412",  # int64 as a string
        "genre": "GENRE_FICTION",  # enums by name
        "labels": {"cover": "sand"},
        "published": "1965-08-01T00:00:00Z",
    }
    # Numbers for int64 and enum numbers are accepted too.
    other = create(library, 1, "numbers", title="N", pages=7, genre=2)
    assert other["pages"] == "7" and other["genre"] == "GENRE_SCIENCE"


def test_path_templates_with_several_segments_rest_and_query_parameters(library):
    create(library, 2, "a", title="A", labels={"k": "v"})
    r = library.http.get("/v1/shelves/2/books/a")
    assert r.status_code == 200 and r.json()["title"] == "A" and "labels" not in r.json()
    # Query parameters by proto name or JSON name; a timestamp as text.
    r = library.http.get("/v1/shelves/2/books/a", params={"include_labels": "true", "asOf": "2020-01-02T03:04:05Z"})
    assert r.json()["labels"] == {"k": "v"} and r.json()["published"] == "2020-01-02T03:04:05Z"
    # The additional binding: `**` takes the rest of the path, slashes included.
    r = library.http.get("/v1/books/shelves/2/books/a")
    assert r.status_code == 200 and r.json()["name"] == "shelves/2/books/a"
    # A bad query value is INVALID_ARGUMENT naming the parameter.
    body = status_of(library.http.get("/v1/shelves/2/books/a", params={"include_labels": "yes"}), 400, 3)
    assert "include_labels" in body["message"] and "true or false" in body["message"]


def test_repeated_and_nested_query_parameters_and_response_body(library):
    create(library, 3, "f1", title="F1", genre="GENRE_FICTION", authors=["x"], pages=100)
    create(library, 3, "f2", title="F2", genre="GENRE_FICTION", authors=["y"], pages=300)
    create(library, 3, "s1", title="S1", genre="GENRE_SCIENCE", authors=["x"], pages=500)
    r = library.http.get("/v1/shelves/3/books")
    # response_body: "books" sends the list alone, fields in order.
    assert r.status_code == 200
    assert [b["name"] for b in r.json()] == ["shelves/3/books/f1", "shelves/3/books/f2", "shelves/3/books/s1"]
    assert list(r.json()[0]) == ["name", "title", "authors", "pages", "genre"]
    r = library.http.get("/v1/shelves/3/books", params=[("genres", "GENRE_FICTION"), ("genres", "2"), ("filter.author", "x")])
    assert [b["name"] for b in r.json()] == ["shelves/3/books/f1", "shelves/3/books/s1"]
    r = library.http.get("/v1/shelves/3/books", params={"filter.min_pages": "200", "pageSize": "1"})
    assert [b["name"] for b in r.json()] == ["shelves/3/books/f2"]
    # An empty list is still the field: [].
    assert library.http.get("/v1/shelves/99/books").json() == []
    # The POST binding takes the filter from the body; it has no
    # response_body, so the whole response comes back.
    r = library.http.post("/v1/shelves/3/books:search", json={"author": "y"})
    assert [b["name"] for b in r.json()["books"]] == ["shelves/3/books/f2"]
    status_of(library.http.get("/v1/shelves/3/books", params={"filter": "x"}), 400, 3)


def test_patch_put_delete_and_a_custom_verb(library):
    create(library, 4, "p", title="Old")
    # PATCH: the body is the book, its name from the path.
    r = library.http.patch("/v1/shelves/4/books/p", json={"title": "New", "name": "ignored"}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"name": "shelves/4/books/p", "title": "New"}
    # PUT with body "*": the whole request from the body, the path field
    # set; the FieldMask as its JSON string.
    r = library.http.put("/v1/shelves/4/books/p", json={"book": {"title": "Put", "pages": 9}, "updateMask": "title"}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"name": "shelves/4/books/p", "title": "Put"}
    # PATCH with a mask in the query string.
    r = library.http.patch("/v1/shelves/4/books/p", params={"updateMask": "pages"}, json={"title": "x", "pages": 12}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"name": "shelves/4/books/p", "title": "Put", "pages": "12"}
    # :move with body "*".
    r = library.http.post("/v1/shelves/4/books/p:move", json={"otherShelf": "shelves/5"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["name"] == "shelves/5/books/p"
    r = library.http.delete("/v1/shelves/5/books/p", headers=AUTH)
    assert r.status_code == 200 and r.json() == {}
    status_of(library.http.delete("/v1/shelves/5/books/p", headers=AUTH), 404, 5)


def test_well_known_types_in_their_json_forms(library):
    book = create(
        library, 6, "wkt", title="W",
        readTime="3600.500s",
        extra={"shelf": "top", "copies": 3, "tags": ["a", None, True]},
        rating=5,
        attachment={"@type": "type.googleapis.com/library.v1.Shelf", "id": "42"},
        published="2001-02-03T04:05:06.789Z",
    )
    assert book["readTime"] == "3600.500s"
    assert book["extra"] == {"shelf": "top", "copies": 3, "tags": ["a", None, True]}
    assert book["rating"] == 5
    assert book["attachment"] == {"@type": "type.googleapis.com/library.v1.Shelf", "id": "42"}
    assert book["published"] == "2001-02-03T04:05:06.789Z"
    assert library.http.get("/v1/shelves/6/books/wkt").json() == book
    # An Any naming a type the server does not know is refused.
    body = status_of(library.http.post("/v1/shelves/6/books", json={"title": "x", "attachment": {"@type": "type.googleapis.com/no.Such"}}, headers=AUTH), 400, 3)
    assert "no.Such" in body["message"]
    status_of(library.http.post("/v1/shelves/6/books", json={"title": "x", "readTime": "soon"}, headers=AUTH), 400, 3)


def test_metadata_travels_as_headers(library):
    r = library.http.get("/v1/shelves/3/files/a", headers={"Grpc-Metadata-Tenant": "acme"})
    assert r.status_code == 200
    assert base64.b64decode(r.json()) == b"shelf 3 file a for acme"
    assert r.headers["grpc-metadata-shelf"] == "3"
    assert len(r.headers["x-request-id"]) == 32


def test_rest_of_path_response_body_bytes_and_a_custom_method(library):
    r = library.http.get("/v1/shelves/9/files/docs/read%20me.txt")
    assert r.status_code == 200
    assert base64.b64decode(r.json()) == b"shelf 9 file docs/read me.txt"
    r = library.http.head("/v1/shelves/9/files/docs/x")
    assert r.status_code == 200 and r.content == b""


def test_server_streaming_as_ndjson_and_server_sent_events(library):
    with library.http.stream("GET", "/v1/shelves/7:watch") as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines == [{"result": {"book": f"shelves/7/books/{i}", "kind": "updated"}} for i in (1, 2, 3)]
    # A failure after the stream began ends it with an error line.
    with library.http.stream("GET", "/v1/shelves/0:watch") as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[0] == {"result": {"book": "shelves/0/books/1", "kind": "updated"}}
    assert lines[1]["error"]["code"] == 14 and lines[1]["error"]["message"] == "the shelf went away"
    with library.http.stream("GET", "/v1/shelves/0:watch", headers={"Accept": "text/event-stream"}) as r:
        assert r.headers["content-type"] == "text/event-stream"
        text = r.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[0] == 'data: {"book":"shelves/0/books/1","kind":"updated"}'
    assert events[1].startswith("event: error\ndata: ") and json.loads(events[1].split("data: ", 1)[1])["code"] == 14
    # Failing before it began is an HTTP error.
    status_of(library.http.get("/v1/shelves/-1:watch"), 400, 3)


def test_bad_requests_get_status_json_naming_the_problem(library):
    body = status_of(library.http.post("/v1/shelves/1/books", json={"title": "x", "colour": "red"}, headers=AUTH), 400, 3)
    assert "colour" in body["message"]
    body = status_of(library.http.post("/v1/shelves/1/books", content=b"{not json", headers=AUTH), 400, 3)
    assert "not JSON" in body["message"]
    body = status_of(library.http.get("/v1/shelves/1/books", params={"bogus": "1"}), 400, 3)
    assert "bogus" in body["message"]
    body = status_of(library.http.get("/v1/shelves/1/books/x", params={"include_labels": "true", "includeLabels": "true"}), 400, 3)
    assert "more than once" in body["message"]
    status_of(library.http.get("/v2/nothing"), 404, 5)
    status_of(library.http.put("/v1/shelves/1/files/a"), 405, 12)
    status_of(library.http.get("/v1/shelves/1/books/missing"), 404, 5)
    status_of(library.http.get("/v1/shelves/1/books/%zz"), 404, 5)


def grpc_error(call):
    try:
        call()
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call succeeded")


def details_of(error):
    from grpc_status import rpc_status

    return rpc_status.from_call(error)


def test_auth_answers_alike_on_both_surfaces(library, pb):
    pb2, grpc_pb2 = pb
    stub = grpc_pb2.LibraryStub(grpc.insecure_channel(library.grpc))
    request = pb2.CreateBookRequest(parent="shelves/1", book=pb2.Book(title="T"))
    e = grpc_error(lambda: stub.CreateBook(request, timeout=5))
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    body = status_of(library.http.post("/v1/shelves/1/books", json={"title": "T"}), 401, 16)
    assert body["message"] == e.details()
    bad = {"Authorization": "Bearer " + jwt.encode({"iss": "x", "aud": "library", "exp": 1}, SECRET, algorithm="HS256")}
    e = grpc_error(lambda: stub.CreateBook(request, timeout=5, metadata=[("authorization", bad["Authorization"])]))
    body = status_of(library.http.post("/v1/shelves/1/books", json={"title": "T"}, headers=bad), 401, 16)
    assert body["message"] == e.details()


def test_validation_answers_alike_on_both_surfaces(library, pb):
    pb2, grpc_pb2 = pb
    stub = grpc_pb2.LibraryStub(grpc.insecure_channel(library.grpc))
    request = pb2.CreateBookRequest(parent="shelves/1", book=pb2.Book(title=""))
    e = grpc_error(lambda: stub.CreateBook(request, timeout=5, metadata=[("authorization", AUTH["Authorization"])]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    body = status_of(library.http.post("/v1/shelves/1/books", json={"title": ""}, headers=AUTH), 400, 3)
    assert body["message"] == e.details()
    types = [d["@type"] for d in body["details"]]
    assert types == [d.type_url for d in details_of(e).details]
    assert types == ["type.googleapis.com/buf.validate.Violations", "type.googleapis.com/google.rpc.BadRequest"]
    violation = body["details"][0]["violations"][0]
    assert violation["ruleId"] == "string.min_len"
    assert [f["fieldName"] for f in violation["field"]["elements"]] == ["book", "title"]
    assert body["details"][1]["fieldViolations"] == [
        {"field": "book.title", "description": "must be at least 1 characters", "reason": "string.min_len"}
    ]


def test_rate_limits_answer_alike_on_both_surfaces(library, pb):
    pb2, grpc_pb2 = pb
    stub = grpc_pb2.LibraryStub(grpc.insecure_channel(library.grpc))
    meta = [("authorization", AUTH["Authorization"])]
    # MoveBook allows two at once, then one a second: the burst is spent
    # over both surfaces, then each is refused.
    time.sleep(2.1)  # whatever earlier tests took is back
    codes = []
    for i in range(2):
        r = library.http.post(f"/v1/shelves/8/books/none{i}:move", json={"otherShelf": "shelves/9"}, headers=AUTH)
        codes.append(r.status_code)
    assert codes == [404, 404], codes  # allowed through, and the book is not there
    e = grpc_error(lambda: stub.MoveBook(pb2.MoveBookRequest(name="shelves/8/books/x"), timeout=5, metadata=meta))
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    body = status_of(library.http.post("/v1/shelves/8/books/y:move", json={}, headers=AUTH), 429, 8)
    assert body["message"] == e.details()
    retry = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo"]
    assert len(retry) == 1 and retry[0]["retryDelay"].endswith("s")


def test_calls_go_through_the_middleware(library):
    r = library.http.get("/v1/shelves/1/books/missing", headers={"X-Request-Id": "rest-call-1"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "rest-call-1"
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    library.http.get("/v1/shelves/1/books", headers={"traceparent": traceparent, "X-Request-Id": "rest-call-2"})

    def records():
        return [rec for rec in library.logs() if rec.get("msg") == "rpc" and rec.get("request_id", "").startswith("rest-call-")]

    from conftest import wait_for

    assert wait_for(lambda: len(records()) >= 2, seconds=5), library.lines[-5:]
    first, second = sorted(records(), key=lambda rec: rec["request_id"])
    assert first["method"] == "/library.v1.Library/GetBook" and first["code"] == "NotFound"
    assert second["method"] == "/library.v1.Library/ListBooks" and second["code"] == "OK"
    assert second["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    metrics = httpx.get(f"http://{library.metrics}/metrics").text
    assert re.search(r'grpc_server_handled_total\{grpc_code="NotFound",grpc_method="GetBook",grpc_service="library.v1.Library",grpc_type="unary"\} [1-9]', metrics), metrics


def test_the_served_openapi_document_is_the_generated_one_and_valid(library, binaries, tmp_path):
    r = run([binaries["plugin"], "generate", "-I", PROTOS, PROTOS / "library.proto", "--out", tmp_path, "--opt", "target=openapi"])
    assert r.returncode == 0, r.stderr
    generated = json.loads((tmp_path / "library" / "openapi.json").read_text())
    served = library.http.get("/openapi.json")
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == generated
    from openapi_spec_validator import validate

    validate(generated)
    assert generated["openapi"] == "3.1.0"
    get = generated["paths"]["/v1/{name}"]["get"]
    assert get["description"] == "Reads one book."
    assert get["parameters"][0]["schema"]["pattern"] == "^shelves/[^/]+/books/[^/]+$"
    book = generated["components"]["schemas"]["library.v1.Book"]
    assert book["properties"]["title"]["minLength"] == 1  # from (buf.validate.field).string.min_len
    assert book["properties"]["pages"]["type"] == "string"  # int64 in the JSON mapping
    assert book["properties"]["published"] == {"type": "string", "format": "date-time"}
    assert generated["paths"]["/v1/{parent}/books"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in get


def test_schemathesis_finds_no_server_error_and_no_response_off_the_schema(library):
    """schemathesis generates requests from the served document (coverage
    and fuzzing phases, authenticated) and checks every response: no 5xx,
    status codes, content types and bodies as the document declares."""
    r = run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"http://{library.http_addr}/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            "--phases", "coverage,fuzzing", "--max-examples", "40", "--seed", "1",
            "--suppress-health-check", "filter_too_much",
            "-H", f"Authorization: Bearer {token()}",
        ],
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", r.stdout)
    assert summary and summary.group(1) == summary.group(2) and int(summary.group(1)) > 500, r.stdout[-2000:]
