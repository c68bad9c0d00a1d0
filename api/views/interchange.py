"""Program import: the INTERCHANGE folder uploaded as a zip."""

import zipfile

from django.db import transaction
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
from audit.services import import_record
from interchange.importer import ImportFailed, import_program
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
        "Rows are upserted by key, so uploading the same zip twice changes nothing."
    ),
    request={"multipart/form-data": s.ImportInputSerializer},
    responses={
        200: s.ImportResultSerializer,
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
        try:
            # The import and its one audit trail entry commit together (or not at all).
            with zipfile.ZipFile(file) as archive, transaction.atomic(), acting(channel=Channel.IMPORT):
                result = import_program(archive, on_progress=progress)
                if result.files:
                    import_record(
                        source=file.name or "upload.zip",
                        files={name: summary.counts() for name, summary in result.files.items()},
                    )
        except ImportFailed as exc:
            if progress is not None:
                progress.failed(len(exc.errors))
            raise drf_serializers.ValidationError({"file": exc.errors}) from exc
        except zipfile.BadZipFile as exc:
            raise drf_serializers.ValidationError({"file": [f"Not a readable zip: {exc}"]}) from exc
        if progress is not None:
            progress.finished(result)
        body = {
            "files": {name: summary.counts() for name, summary in result.files.items()},
            "lines": result.lines(),
        }
        return Response(s.ImportResultSerializer(body).data, status=status.HTTP_200_OK)


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
