"""Program import: the INTERCHANGE folder uploaded as a zip."""

import zipfile

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from api import serializers as s
from api.idempotency import IdempotentPostMixin
from api.permissions import Importer
from api.schema import ErrorSerializer, errors
from api.throttling import ScopedThrottle
from interchange.importer import ImportFailed
from interchange.jobs import import_archive, import_job_submit, result_body, visible_import_job
from interchange.progress import CachedProgress, read_progress
from prm.acting import Channel, acting


@extend_schema(
    tags=["interchange"],
    summary="Import program data (a zip of INTERCHANGE CSV files)",
    description=(
        "Partner managers and sales ops. Upload a .zip holding any of join_sources.csv, partners.csv, "
        "accounts.csv, deals.csv, registrations.csv, touches.csv, costs.csv, targets.csv and "
        "mdf_budgets.csv (at the "
        "root or in one folder). All or nothing: any bad row refuses the whole import with 400, every "
        "bad row listed as `file:line: column: reason` under `fields.file`, and nothing is written. "
        "Rows are upserted by key, so uploading the same zip twice changes nothing. An upload larger than "
        "IMPORT_INLINE_MAX_BYTES (5 MB by default), or sent with the header `Prefer: respond-async`, is "
        "queued for a worker instead: 202 with the job (`Location` is its URL); poll the job for its "
        "progress, then its result or its bad rows."
    ),
    request={"multipart/form-data": s.ImportInputSerializer},
    responses={
        200: s.ImportResultSerializer,
        202: s.ImportJobSerializer,
        400: OpenApiResponse(
            ErrorSerializer,
            description="The upload is not a zip, or rows are invalid (nothing was written).",
            examples=[
                OpenApiExample(
                    "Bad rows",
                    value={
                        "error": {
                            "status": 400,
                            "code": "invalid",
                            "detail": "2 error(s); nothing was imported",
                            "fields": {
                                "file": [
                                    "deals.csv:14: amount: must be greater than 0",
                                    "touches.csv:3: partner: unknown partner 'P-404'",
                                ]
                            },
                        }
                    },
                    response_only=True,
                    status_codes=["400"],
                )
            ],
        ),
        **errors(403, 429),
    },
    examples=[
        OpenApiExample(
            "Imported",
            value={
                "files": {"deals.csv": {"rows": 2, "created": 1, "updated": 1, "unchanged": 0}},
                "lines": ["deals.csv: 2 rows, 1 created, 1 updated, 0 unchanged"],
            },
            response_only=True,
            status_codes=["200"],
        )
    ],
)
class ProgramImportView(IdempotentPostMixin, APIView):
    permission_classes = [Importer]
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [ScopedThrottle]
    throttle_scope = "import"

    def post(self, request):
        upload = s.ImportInputSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        file = upload.validated_data["file"]
        progress_id = upload.validated_data.get("progress_id")
        progress = CachedProgress(user_id=request.user.pk, progress_id=progress_id) if progress_id else None
        if not zipfile.is_zipfile(file):
            raise drf_serializers.ValidationError({"file": ["Upload a .zip of the INTERCHANGE CSV files."]})
        file.seek(0)
        if _respond_async(request) or file.size > settings.IMPORT_INLINE_MAX_BYTES:
            with acting(channel=Channel.IMPORT) as context:
                job = import_job_submit(
                    upload=file, actor=context.resolved_actor(), progress_id=progress_id or ""
                )
            body = s.ImportJobSerializer(_job_body(request, job)).data
            return Response(
                body,
                status=status.HTTP_202_ACCEPTED,
                headers={"Location": body["url"], "Preference-Applied": "respond-async"},
            )
        try:
            with zipfile.ZipFile(file) as archive, acting(channel=Channel.IMPORT):
                result = import_archive(archive, source=file.name or "upload.zip", on_progress=progress)
        except ImportFailed as exc:
            if progress is not None:
                progress.failed(len(exc.errors))
            raise drf_serializers.ValidationError({"file": exc.errors}) from exc
        except zipfile.BadZipFile as exc:
            raise drf_serializers.ValidationError({"file": [f"Not a readable zip: {exc}"]}) from exc
        if progress is not None:
            progress.finished(result)
        return Response(s.ImportResultSerializer(result_body(result)).data, status=status.HTTP_200_OK)


def _respond_async(request) -> bool:
    # RFC 7240: `Prefer: respond-async` (possibly among other preferences).
    prefer = request.headers.get("Prefer", "")
    return any(part.strip().lower() == "respond-async" for part in prefer.split(","))


def _job_body(request, job) -> dict:
    progress = read_progress(user_id=job.requested_by_id, progress_id=job.progress_id)
    running = job.status == job.Status.QUEUED and progress is not None and progress.get("state") == "running"
    return {
        "id": job.pk,
        "url": request.build_absolute_uri(reverse("api:import-job", args=[job.pk])),
        "status": "running" if running else job.status,
        "filename": job.filename,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "progress": progress,
        "result": job.result if job.status == job.Status.SUCCEEDED else None,
        "error_count": (job.result or {}).get("error_count", 0) if job.status == job.Status.FAILED else 0,
        "errors": job.errors,
    }


@extend_schema(
    tags=["interchange"],
    summary="Progress of an import (by the progress_id given with the upload)",
    description=(
        "Each file's rows read, total rows, rate, seconds and time left, and its stage (`reading`: "
        "rows streamed to the database; `writing`: set-based checks and upsert; `done`). Readable by "
        "the user who uploaded, while the import runs and for a day after. 404 for an unknown id."
    ),
    responses={200: s.ImportProgressSerializer, **errors(403, 404)},
    examples=[
        OpenApiExample(
            "Running",
            value={
                "state": "running",
                "errors": 0,
                "files": {
                    "accounts.csv": {
                        "file": "accounts.csv",
                        "rows": 630878,
                        "total": 630878,
                        "seconds": 21.4,
                        "rows_per_second": 29480,
                        "seconds_left": 0,
                        "stage": "done",
                    },
                    "deals.csv": {
                        "file": "deals.csv",
                        "rows": 420000,
                        "total": 1000000,
                        "seconds": 14.2,
                        "rows_per_second": 29577,
                        "seconds_left": 19.6,
                        "stage": "reading",
                    },
                },
            },
            response_only=True,
            status_codes=["200"],
        )
    ],
)
class ImportProgressView(APIView):
    permission_classes = [Importer]

    def get(self, request, progress_id: str):
        state = read_progress(user_id=request.user.pk, progress_id=progress_id)
        if state is None:
            raise NotFound("No import with this progress_id.")
        return Response(s.ImportProgressSerializer(state).data)


@extend_schema(
    tags=["interchange"],
    summary="An import job (an upload queued for a worker)",
    description=(
        "`queued` until a worker starts it, `running` while it imports (with each file's progress), then "
        "`succeeded` with the same result an inline import returns, or `failed` with its bad rows (nothing "
        "was written). Readable by the user who uploaded; 404 for anyone else."
    ),
    responses={200: s.ImportJobSerializer, **errors(403, 404)},
    examples=[
        OpenApiExample(
            "Succeeded",
            value={
                "id": "5f0c3a9e-7d42-4a8e-9a51-2b6f3e1c0d77",
                "url": "https://prm.example.com/api/v1/imports/jobs/5f0c3a9e-7d42-4a8e-9a51-2b6f3e1c0d77/",
                "status": "succeeded",
                "filename": "program.zip",
                "created_at": "2026-12-03T21:40:00Z",
                "finished_at": "2026-12-03T21:44:12Z",
                "progress": None,
                "result": {
                    "files": {
                        "deals.csv": {"rows": 1000000, "created": 1000000, "updated": 0, "unchanged": 0}
                    },
                    "lines": ["deals.csv: 1000000 rows, 1000000 created, 0 updated, 0 unchanged"],
                },
                "error_count": 0,
                "errors": [],
            },
            response_only=True,
            status_codes=["200"],
        )
    ],
)
class ImportJobView(APIView):
    permission_classes = [Importer]

    def get(self, request, job_id):
        job = visible_import_job(user=request.user, job_id=job_id)
        if job is None:
            raise NotFound("No import job with this id.")
        return Response(s.ImportJobSerializer(_job_body(request, job)).data)
