//! `pysaas-example-reminders`: PySaaS's every role in one process on SQLite (as `pysaas dev`),
//! with the `reminders.invoice_overdue` kind added. Submit one with
//! `pysaas enqueue reminders.invoice_overdue --payload '{"invoice":"INV-1","email":"a@example.com","amount_cents":4200,"currency":"EUR","days_overdue":3}'`.

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = pysaas::Config::load_unvalidated(None)?;
        pysaas::app::init_tracing(&config, pysaas::app::LOG_DEFAULT);
        let vault = pysaas::apply_vault(&mut config).await?;
        config.validate()?;
        pysaas_example_reminders::app(config)
            .with_vault(vault)
            .run_dev()
            .await
    })
}
