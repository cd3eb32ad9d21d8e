from django.urls import path

from . import views

app_name = "staff"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("", views.CustomerSearchView.as_view(), name="search"),
    path("customers/<int:customer_id>/", views.CustomerDetailView.as_view(), name="customer"),
    path("customers/<int:customer_id>/goodwill/", views.GoodwillRewardsView.as_view(), name="goodwill_rewards"),
    path(
        "customers/<int:customer_id>/goodwill/<int:reward_id>/",
        views.GoodwillIssueView.as_view(),
        name="goodwill_issue",
    ),
    path("goodwill/<int:pk>/", views.GoodwillRequestView.as_view(), name="goodwill_request"),
    path("goodwill/<int:pk>/approve/", views.GoodwillApproveView.as_view(), name="goodwill_approve"),
    path("goodwill/<int:pk>/reject/", views.GoodwillRejectView.as_view(), name="goodwill_reject"),
    path("approvals/", views.ApprovalQueueView.as_view(), name="approvals"),
    path("issuances/", views.IssuanceHistoryView.as_view(), name="issuances"),
    path("issuances/<int:pk>/", views.IssuanceDetailView.as_view(), name="issuance"),
    path("lines/<int:line_id>/fulfillment/", views.FulfillmentChangeView.as_view(), name="fulfillment_change"),
    path("request-ids/", views.RequestIdLookupView.as_view(), name="request_ids"),
    path("bulk/", views.BulkListView.as_view(), name="bulk"),
    path("bulk/template.csv", views.BulkTemplateCsvView.as_view(), name="bulk_template"),
    path("bulk/<int:pk>/", views.BulkJobView.as_view(), name="bulk_job"),
    path("bulk/<int:pk>/progress/", views.BulkProgressView.as_view(), name="bulk_progress"),
    path("bulk/<int:pk>/result.csv", views.BulkResultCsvView.as_view(), name="bulk_result"),
    path("bulk/<int:pk>/start/", views.BulkActionView.as_view(action="start"), name="bulk_start"),
    path("bulk/<int:pk>/resume/", views.BulkActionView.as_view(action="resume"), name="bulk_resume"),
    path("bulk/<int:pk>/retry/", views.BulkActionView.as_view(action="retry"), name="bulk_retry"),
    path("bulk/<int:pk>/cancel/", views.BulkActionView.as_view(action="cancel"), name="bulk_cancel"),
    path("dashboard/", views.DashboardView.as_view(), name="dashboard"),
]
