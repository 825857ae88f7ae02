//! Logs: CloudWatch log groups with retention; reading a service's lines back (one log
//! stream per instance, named by its instance id).

use async_trait::async_trait;
use skiff_pluginapi::{LogLine, LogQuery, Logs, Result};

use crate::{AwsProvider, code, fail};

/// Retention values CloudWatch accepts; a request is rounded up to the next one.
const RETENTION_DAYS: [u32; 22] =
    [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

fn retention(days: u32) -> i32 {
    let d = RETENTION_DAYS.iter().copied().find(|d| *d >= days).unwrap_or(3653);
    i32::try_from(d).unwrap_or(3653)
}

impl AwsProvider {
    /// Log groups of a service: `/skiff/<environment>/<service>`.
    async fn log_groups_of(&self, service: &str) -> Result<Vec<String>> {
        let mut pages = self.c.logs.describe_log_groups().log_group_name_prefix("/skiff/").into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| fail("list log groups", e))?;
            out.extend(
                page.log_groups()
                    .iter()
                    .filter_map(|g| g.log_group_name())
                    .filter(|n| n.rsplit('/').next() == Some(service))
                    .map(str::to_owned),
            );
        }
        Ok(out)
    }
}

#[async_trait]
impl Logs for AwsProvider {
    async fn ensure_log_group(&self, name: &str, retention_days: u32) -> Result<()> {
        let service = name.rsplit('/').next().unwrap_or(name);
        match self.c.logs.create_log_group().log_group_name(name).tags(crate::names::TAG_SERVICE, service).send().await
        {
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(fail(&format!("create log group {name}"), e)),
        }
        self.c
            .logs
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(retention(retention_days))
            .send()
            .await
            .map_err(|e| fail(&format!("set the retention of {name}"), e))?;
        Ok(())
    }

    async fn read(&self, query: &LogQuery) -> Result<Vec<LogLine>> {
        let mut lines = Vec::new();
        for group in self.log_groups_of(&query.service).await? {
            let mut req = self.c.logs.filter_log_events().log_group_name(&group);
            if let Some(i) = &query.instance {
                req = req.log_stream_names(i);
            }
            if let Some(since) = query.since_ms {
                req = req.start_time(i64::try_from(since).unwrap_or(i64::MAX));
            }
            let mut pages = req.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| fail(&format!("read log group {group}"), e))?;
                let wanted = |e: &&aws_sdk_cloudwatchlogs::types::FilteredLogEvent| {
                    query.instance.as_deref().is_none_or(|i| e.log_stream_name() == Some(i))
                };
                lines.extend(page.events().iter().filter(wanted).map(|e| LogLine {
                    at_ms: u64::try_from(e.timestamp().unwrap_or(0)).unwrap_or(0),
                    instance: e.log_stream_name().unwrap_or_default().to_owned(),
                    line: e.message().unwrap_or_default().trim_end().to_owned(),
                }));
            }
        }
        lines.sort_by_key(|l| l.at_ms);
        if let Some(limit) = query.limit {
            let skip = lines.len().saturating_sub(limit);
            lines.drain(..skip);
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retention_rounds_up_to_a_value_cloudwatch_accepts() {
        assert_eq!(super::retention(7), 7);
        assert_eq!(super::retention(10), 14);
        assert_eq!(super::retention(0), 1);
        assert_eq!(super::retention(99_999), 3653);
    }
}
