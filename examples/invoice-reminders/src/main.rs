//! `pysaas-example-reminders`: PySaaS's every role in one process on SQLite (as `pysaas dev`),
//! with the `reminders.invoice_overdue` kind added. Submit one with
//! `pysaas enqueue reminders.invoice_overdue --payload '{"invoice":"INV-1","email":"a@example.com","amount_cents":4200,"currency":"EUR","days_overdue":3}'`.

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = pysaas::Config::load(None)?;
        pysaas::app::init_tracing(&config, pysaas::app::LOG_DEFAULT);
        pysaas::apply_vault(&mut config).await?;
        pysaas_example_reminders::app(config).run_dev().await
    })
}
