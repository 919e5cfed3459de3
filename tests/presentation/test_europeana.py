"""The ``europeana`` profile on manifests as served: each rule passes a good manifest and catches a bad one.

The good manifest is what the builder makes from a full description under an https public URL;
each test breaks one thing and expects exactly that rule (and severity) to report it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iiifserver.presentation import europeana
from iiifserver.presentation.europeana import Severity, check_manifest, check_served, is_europeana_rights

B = "https://iiif.example.org"


def good() -> dict[str, Any]:
    service3 = {"id": f"{B}/iiif/3/p", "type": "ImageService3", "profile": "level2"}
    service2 = {"@id": f"{B}/iiif/2/p", "@type": "ImageService2", "profile": "http://iiif.io/api/image/2/level2.json"}
    return {
        "@context": "http://iiif.io/api/presentation/3/context.json",
        "id": f"{B}/iiif/presentation/3/p/manifest",
        "type": "Manifest",
        "label": {"fr": ["Tableau"], "en": ["Painting"]},
        "metadata": [{"label": {"en": ["Shelfmark"]}, "value": {"none": ["MS 1"]}}],
        "rights": "http://creativecommons.org/licenses/by/4.0/",
        "requiredStatement": {"label": {"en": ["Attribution"]}, "value": {"en": ["Museum"]}},
        "provider": [
            {
                "id": "https://museum.example.org/",
                "type": "Agent",
                "label": {"en": ["Museum"]},
                "homepage": [{"id": "https://museum.example.org/", "type": "Text", "format": "text/html"}],
                "logo": [{"id": f"{B}/iiif/3/_assets%2Flogo/full/200,200/0/default.png", "type": "Image"}],
            }
        ],
        "homepage": [{"id": "https://museum.example.org/objects/1", "type": "Text", "format": "text/html"}],
        "seeAlso": [
            {
                "id": "https://museum.example.org/objects/1.xml",
                "type": "Dataset",
                "format": "application/rdf+xml",
                "profile": "http://www.europeana.eu/schemas/edm/",
            }
        ],
        "thumbnail": [{"id": f"{B}/iiif/3/p/full/400,/0/default.jpg", "type": "Image", "service": [service3]}],
        "items": [
            {
                "id": f"{B}/iiif/presentation/3/p/canvas/1",
                "type": "Canvas",
                "label": {"none": ["fol. 1r"]},
                "width": 1200,
                "height": 900,
                "items": [
                    {
                        "id": f"{B}/iiif/presentation/3/p/canvas/1/page",
                        "type": "AnnotationPage",
                        "items": [
                            {
                                "id": f"{B}/iiif/presentation/3/p/canvas/1/annotation",
                                "type": "Annotation",
                                "motivation": "painting",
                                "body": {
                                    "id": f"{B}/iiif/3/p/full/max/0/default.jpg",
                                    "type": "Image",
                                    "service": [service3, service2],
                                },
                                "target": f"{B}/iiif/presentation/3/p/canvas/1",
                            }
                        ],
                    }
                ],
            }
        ],
    }


def found(manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(f.rule.id, f.severity.value, f.path) for f in check_manifest(manifest)]


def body(m: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = m["items"][0]["items"][0]["items"][0]["body"]
    return result


def test_the_good_manifest_has_no_finding() -> None:
    assert check_manifest(good()) == []


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        if value is None:
            del m[key]
        else:
            m[key] = value

    return change


BODY_PATH = "items[0].items[0].items[0].body"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set("@context", "http://iiif.io/api/presentation/2/context.json"), ("context", "error", "@context")),
        (_set("label", None), ("label", "error", "label")),
        (_set("label", {"en": [" "]}), ("label", "error", "label")),
        (_set("label", {"none": ["Painting"]}), ("label-language", "warning", "label")),
        (_set("rights", None), ("rights", "error", "rights")),
        (_set("rights", "http://rightsstatements.org/vocab/NoC-US/1.0/"), ("rights-allowed", "error", "rights")),
        (_set("provider", None), ("provider", "error", "provider")),
        (_set("homepage", None), ("homepage", "warning", "homepage")),
        (_set("seeAlso", None), ("see-also", "warning", "seeAlso")),
        (_set("seeAlso", [{"id": "https://m.example.org/1.xml"}]), ("see-also", "warning", "seeAlso[0]")),
        (_set("requiredStatement", None), ("required-statement", "warning", "requiredStatement")),
        (_set("thumbnail", None), ("thumbnail", "warning", "thumbnail")),
    ],
)  # fmt: skip
def test_each_manifest_rule(change: Callable[[dict[str, Any]], None], expected: tuple[str, str, str]) -> None:
    m = good()
    change(m)
    assert found(m) == [expected]


def test_language_tags_must_be_bcp47_anywhere() -> None:
    m = good()
    m["metadata"][0]["value"] = {"en_GB": ["MS 1"]}
    m["items"][0]["label"] = {"e": ["x"], "fr-": ["y"]}
    assert found(m) == [
        ("language-tag", "error", "metadata[0].value"),
        ("language-tag", "error", "items[0].label"),
        ("language-tag", "error", "items[0].label"),
    ]
    message = check_manifest(m)[0].message
    assert "'en_GB' is not a language tag" in message


@pytest.mark.parametrize(
    "tag", ["none", "en", "fr", "nl-BE", "zh-Hant-TW", "sr-Latn", "de-CH-1996", "es-419", "x-local"]
)
def test_well_formed_language_tags(tag: str) -> None:
    assert europeana.is_language_tag(tag)


@pytest.mark.parametrize("tag", ["", "e", "en_GB", "english-", "fr-", "en--GB", "123", "en-x", "toolonglanguage"])
def test_malformed_language_tags(tag: str) -> None:
    assert not europeana.is_language_tag(tag)


ACCEPTED = [
    "http://creativecommons.org/publicdomain/mark/1.0/",
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "http://creativecommons.org/licenses/by/4.0/",
    "http://creativecommons.org/licenses/by-sa/4.0/",
    "http://creativecommons.org/licenses/by-nd/4.0/",
    "http://creativecommons.org/licenses/by-nc/4.0/",
    "http://creativecommons.org/licenses/by-nc-sa/4.0/",
    "http://creativecommons.org/licenses/by-nc-nd/4.0/",
    "http://creativecommons.org/licenses/by/3.0/nl/",
    "http://creativecommons.org/licenses/by-sa/2.5/",
    "http://creativecommons.org/licenses/by-nc/2.0/de/",
    "http://rightsstatements.org/vocab/InC/1.0/",
    "http://rightsstatements.org/vocab/InC-EDU/1.0/",
    "http://rightsstatements.org/vocab/InC-EU-OW/1.0/",
    "http://rightsstatements.org/vocab/NoC-NC/1.0/",
    "http://rightsstatements.org/vocab/NoC-OKLR/1.0/",
    "http://rightsstatements.org/vocab/CNE/1.0/",
]


@pytest.mark.parametrize("uri", ACCEPTED)
def test_accepted_rights(uri: str) -> None:
    assert is_europeana_rights(uri)
    m = good()
    m["rights"] = uri
    assert found(m) == []


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("https://creativecommons.org/licenses/by/4.0/", "write 'http://creativecommons.org/licenses/by/4.0/'"),
        ("http://creativecommons.org/licenses/by/4.0", "write 'http://creativecommons.org/licenses/by/4.0/'"),
        ("http://www.rightsstatements.org/vocab/InC/1.0/", "write 'http://rightsstatements.org/vocab/InC/1.0/'"),
        ("https://rightsstatements.org/page/InC-EDU/1.0/?language=en", "write 'http://rightsstatements.org/vocab/InC-EDU/1.0/'"),
        ("http://rightsstatements.org/vocab/NoC-US/1.0/", "only six RightsStatements.org statements"),
        ("http://rightsstatements.org/vocab/InC-NC/1.0/", "not InC-NC"),
        ("http://rightsstatements.org/vocab/UND/1.0/", "not UND"),
        ("http://creativecommons.org/licenses/by/5.0/", "version 5.0"),
        ("http://creativecommons.org/licenses/by/4.0/nl/", "4.0 licences have no jurisdiction ports"),
        ("http://creativecommons.org/licenses/sampling/1.0/", "'sampling' is not a Creative Commons licence"),
        ("http://creativecommons.org/publicdomain/zero/2.0/", "not one of the 14 rights statements"),
        ("Public domain", "not one of the 14 rights statements"),
    ],
)  # fmt: skip
def test_refused_rights_say_why(uri: str, says: str) -> None:
    assert not is_europeana_rights(uri)
    m = good()
    m["rights"] = uri
    (finding,) = check_manifest(m)
    assert (finding.rule.id, finding.severity) == ("rights-allowed", Severity.ERROR)
    assert says in finding.message


def test_http_ids_are_one_error_naming_the_fix() -> None:
    # The same manifest built without a public https URL.
    m = json.loads(json.dumps(good()).replace("https://iiif.example.org", "http://127.0.0.1:8000"))
    findings = check_manifest(m)
    assert [(f.rule.id, f.severity.value, f.path) for f in findings] == [
        ("https-ids", "error", "id"),
        ("https-links", "warning", "provider[0].logo[0].id"),
    ]
    assert "9 ids are http (first: http://127.0.0.1:8000/iiif/presentation/3/p/manifest)" in findings[0].message
    assert "public_url" in findings[0].message
    assert "X-Forwarded-Proto" in findings[0].message
    assert findings[1].rule.field == "provider"


def test_http_links_are_warnings_and_rights_uris_are_not_ids() -> None:
    m = good()
    m["homepage"][0]["id"] = "http://museum.example.org/objects/1"
    m["seeAlso"][0]["id"] = "http://museum.example.org/objects/1.xml"
    assert found(m) == [("https-links", "warning", "homepage[0].id"), ("https-links", "warning", "seeAlso[0].id")]
    assert m["rights"].startswith("http://")  # must be http, and is not reported


def test_provider_needs_a_label_and_should_have_a_homepage() -> None:
    m = good()
    del m["provider"][0]["homepage"]
    assert found(m) == [("provider-homepage", "warning", "provider[0].homepage")]
    m["provider"][0]["label"] = {}
    assert found(m)[0] == ("provider", "error", "provider[0].label")


def test_required_statement_warning_mentions_attribution_licences() -> None:
    m = good()
    del m["requiredStatement"]
    assert "requires attribution" in check_manifest(m)[0].message
    m["rights"] = "http://creativecommons.org/publicdomain/mark/1.0/"
    assert "requires attribution" not in check_manifest(m)[0].message


def test_image_without_a_service_is_an_error() -> None:
    m = good()
    del body(m)["service"]
    assert found(m) == [("image-service", "error", BODY_PATH)]


def test_level0_services_are_a_warning_and_any_level1_passes() -> None:
    m = good()
    body(m)["service"] = [{"id": f"{B}/iiif/3/p", "type": "ImageService3", "profile": "level0"}]
    assert found(m) == [("image-service-level", "warning", f"{BODY_PATH}.service")]
    body(m)["service"].append(
        {"@id": f"{B}/iiif/2/p", "@type": "ImageService2", "profile": ["http://iiif.io/api/image/2/level1.json"]}
    )
    assert found(m) == []


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((399, 250), [("image-size", "error", "items[0]")]),  # under 0.1 MP
        ((400, 300), [("image-size-showcase", "warning", "items[0]")]),  # 0.12 MP: tier 1 only
        ((800, 500), [("image-size-showcase", "warning", "items[0]")]),
        ((800, 533), []),  # 0.426 MP
    ],
)  # fmt: skip
def test_image_size_tiers(size: tuple[int, int], expected: list[tuple[str, str, str]]) -> None:
    m = good()
    m["items"][0]["width"], m["items"][0]["height"] = size
    assert found(m) == expected


def test_served_answers() -> None:
    ok = check_served("manifest", "u", 200, "application/ld+json", "*", "https://www.europeana.eu")
    assert ok == []
    assert (
        check_served("manifest", "u", 200, "application/json", "https://www.europeana.eu", "https://www.europeana.eu")
        == []
    )
    missing = check_served("info.json", "u", 200, "application/json", None, "https://www.europeana.eu")
    assert [(f.rule.id, f.severity) for f in missing] == [("cors", Severity.ERROR)]
    assert "no Access-Control-Allow-Origin" in missing[0].message
    other = check_served("manifest", "u", 200, "application/json", "https://other.example", "https://www.europeana.eu")
    assert [f.rule.id for f in other] == ["cors"]
    gone = check_served("manifest", "u", 404, "text/plain", "*", "https://www.europeana.eu")
    assert [f.rule.id for f in gone] == ["resolvable"]


def test_every_rule_is_listed_once_with_a_public_source() -> None:
    ids = [rule.id for rule in europeana.RULES]
    assert len(ids) == len(set(ids))
    assert all(rule.source.startswith("https://") for rule in europeana.RULES)


def test_every_rule_is_documented_with_its_source() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "europeana.md").read_text(encoding="utf-8")
    for rule in europeana.RULES:
        assert f"| `{rule.id}` | {rule.severity.value}" in page, rule.id
        assert rule.source in page, rule.source


def test_first_image_service() -> None:
    assert europeana.first_image_service(good()) == f"{B}/iiif/3/p"
    m = good()
    del body(m)["service"]
    assert europeana.first_image_service(m) == ""


@pytest.mark.parametrize(
    "manifest",
    [{}, {"items": 5, "label": "x", "provider": "museum", "rights": 7, "@context": None},
     {"items": [{"items": "page", "width": "1"}], "seeAlso": ["x"], "homepage": {"id": 1}},
     {"items": [{"items": [{"items": [{"motivation": "painting", "body": [{"type": "Image", "service": 3}]}]}]}]}],
)  # fmt: skip
def test_odd_documents_are_findings_not_crashes(manifest: dict[str, Any]) -> None:
    findings = check_manifest(manifest)  # a served document may be anything: never an exception
    assert any(f.severity is Severity.ERROR for f in findings)
    europeana.first_image_service(manifest)
