"""Program import through the API: a zip of the INTERCHANGE folder, all or nothing."""

import io
import zipfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from deals.models import Deal, Touch
from interchange.jobs import import_job_run, import_job_submit
from interchange.models import ImportJob
from partners.models import Partner
from prm.acting import Actor
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of

DATA = Path(__file__).parent / "data"


def _zip(folder: Path, *, inside: str = "") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for csv_file in sorted(folder.glob("*.csv")):
            archive.write(csv_file, f"{inside}{csv_file.name}")
    return SimpleUploadedFile("program.zip", buffer.getvalue(), content_type="application/zip")


def test_sales_ops_imports_a_zipped_folder(as_salesops):
    response = as_salesops.post(f"{API}/imports/", {"file": _zip(DATA / "program_valid")}, format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["files"]["deals.csv"] == {"rows": 4, "created": 4, "updated": 0, "unchanged": 0}
    assert "deals.csv: 4 rows, 4 created, 0 updated, 0 unchanged" in body["lines"]
    assert Deal.objects.count() == 4
    assert Touch.objects.count() == 5


def test_the_files_may_sit_in_one_folder_inside_the_zip_and_a_second_upload_changes_nothing(as_manager):
    upload = _zip(DATA / "program_valid", inside="program_valid/")
    assert as_manager.post(f"{API}/imports/", {"file": upload}, format="multipart").status_code == 200
    again = as_manager.post(
        f"{API}/imports/", {"file": _zip(DATA / "program_valid")}, format="multipart"
    ).json()
    assert again["files"]["deals.csv"] == {"rows": 4, "created": 0, "updated": 0, "unchanged": 4}


def test_bad_rows_refuse_the_whole_import_with_every_error_line(as_salesops):
    response = as_salesops.post(f"{API}/imports/", {"file": _zip(DATA / "program_bad")}, format="multipart")
    assert response.status_code == 400
    error = error_of(response)
    lines = error["fields"]["file"]
    assert len(lines) == 8
    assert "deals.csv:6: amount: must be greater than 0" in lines
    assert "registrations.csv:5: partner: unknown partner 'p-nobody'" in lines
    assert Partner.objects.count() == 0 and Deal.objects.count() == 0


def test_an_upload_that_is_not_a_zip_is_a_400(as_salesops):
    upload = SimpleUploadedFile("deals.csv", b"key,account\n", content_type="text/csv")
    response = as_salesops.post(f"{API}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert error_of(response)["fields"]["file"] == ["Upload a .zip of the INTERCHANGE CSV files."]


def test_an_upload_without_a_file_is_a_400(as_salesops):
    response = as_salesops.post(f"{API}/imports/", {}, format="multipart")
    assert response.status_code == 400
    assert "file" in error_of(response)["fields"]


def test_partner_users_cannot_import(world_a, as_admin_a):
    response = as_admin_a.post(f"{API}/imports/", {"file": _zip(DATA / "program_valid")}, format="multipart")
    assert response.status_code == 403
    assert not Deal.objects.filter(key__startswith="d-").exists()


def test_an_upload_with_a_progress_id_reports_each_files_progress_to_its_uploader(as_salesops, as_manager):
    upload = _zip(DATA / "program_valid")
    response = as_salesops.post(
        f"{API}/imports/", {"file": upload, "progress_id": "crm-sync-0001"}, format="multipart"
    )
    assert response.status_code == 200, response.content
    progress = as_salesops.get(f"{API}/imports/progress/crm-sync-0001/")
    assert progress.status_code == 200
    body = progress.json()
    assert body["state"] == "done" and body["errors"] == 0
    deals = body["files"]["deals.csv"]
    assert (deals["rows"], deals["total"], deals["stage"], deals["seconds_left"]) == (4, 4, "done", 0)
    assert set(body["files"]) == {p.name for p in (DATA / "program_valid").glob("*.csv")}
    # Another user (another import's caller) does not see it.
    assert as_manager.get(f"{API}/imports/progress/crm-sync-0001/").status_code == 404


def test_a_refused_upload_reports_failed_with_its_error_count(as_salesops):
    upload = _zip(DATA / "program_bad")
    response = as_salesops.post(
        f"{API}/imports/", {"file": upload, "progress_id": "crm-sync-0002"}, format="multipart"
    )
    assert response.status_code == 400
    body = as_salesops.get(f"{API}/imports/progress/crm-sync-0002/").json()
    assert (body["state"], body["errors"]) == ("failed", 8)


# -- imports queued for a worker (interchange/jobs.py) ----------------------------------------
def _post_async(client, upload, **extra):
    return client.post(
        f"{API}/imports/", {"file": upload, **extra}, format="multipart", headers={"Prefer": "respond-async"}
    )


def test_an_upload_sent_with_respond_async_is_imported_by_a_worker_job(
    as_salesops, as_manager, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = _post_async(as_salesops, _zip(DATA / "program_valid"))
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "queued" and job["result"] is None and job["progress"] is None
    assert response["Location"] == job["url"] and job["url"].endswith(f"/imports/jobs/{job['id']}/")
    assert Deal.objects.count() == 0  # nothing imported until the worker runs it

    with django_capture_on_commit_callbacks(execute=True):
        for send in queued:  # the job's task, sent after commit; eager: it runs here
            send()
    done = as_salesops.get(job["url"]).json()
    assert done["status"] == "succeeded" and done["errors"] == [] and done["error_count"] == 0
    assert done["result"]["files"]["deals.csv"] == {"rows": 4, "created": 4, "updated": 0, "unchanged": 0}
    assert done["progress"]["state"] == "done"
    assert Deal.objects.count() == 4 and Touch.objects.count() == 5
    stored = ImportJob.objects.get()
    assert not stored.archive  # the upload is not kept once imported
    # Only its uploader reads the job.
    assert as_manager.get(job["url"]).status_code == 404


def test_an_upload_over_the_inline_limit_is_queued_and_its_bad_rows_fail_the_job(
    as_salesops, settings, eager_tasks, django_capture_on_commit_callbacks
):
    settings.IMPORT_INLINE_MAX_BYTES = 100
    with django_capture_on_commit_callbacks(execute=True):
        response = as_salesops.post(
            f"{API}/imports/",
            {"file": _zip(DATA / "program_bad"), "progress_id": "crm-sync-0003"},
            format="multipart",
        )
    assert response.status_code == 202, response.content
    job = as_salesops.get(response.json()["url"]).json()
    assert job["status"] == "failed" and job["error_count"] == 8 and len(job["errors"]) == 8
    assert "deals.csv:6: amount: must be greater than 0" in job["errors"]
    assert Partner.objects.count() == 0 and Deal.objects.count() == 0
    # The progress_id the client chose reports the same outcome.
    assert as_salesops.get(f"{API}/imports/progress/crm-sync-0003/").json()["state"] == "failed"


def test_a_job_delivered_twice_imports_once(salesops, django_capture_on_commit_callbacks):
    upload = _zip(DATA / "program_valid")
    with django_capture_on_commit_callbacks(execute=False):
        job = import_job_submit(upload=upload, actor=Actor(label=salesops.username, user=salesops))
    assert import_job_run(job_id=str(job.pk)).status == "succeeded"
    assert import_job_run(job_id=str(job.pk)) is None
    assert Deal.objects.count() == 4
    assert ImportJob.objects.get().result["files"]["deals.csv"]["created"] == 4
