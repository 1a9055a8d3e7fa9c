//! A PING sensor's settings (`kind = "ping"`): how many echo requests a
//! check sends and the loss that makes the host WARNING.

use serde::{Deserialize, Serialize};

use portwatch_probe::ping::PingOptions;

/// A PING sensor's settings as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PingSpec {
    /// Echo requests per check (1 to 20, default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Loss in percent at or above which the host is WARNING (1 to 100,
    /// default 20; 100: only when every echo is lost, which is DOWN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_warning: Option<i64>,
}

impl PingSpec {
    /// The probe's options; the error names the key at fault and the fix.
    pub fn options(&self) -> Result<PingOptions, (&'static str, String)> {
        let mut options = PingOptions::default();
        if let Some(count) = self.count {
            options.count = u8::try_from(count)
                .ok()
                .filter(|c| (1..=20).contains(c))
                .ok_or((
                    "count",
                    format!("count = {count}: send 1 to 20 echo requests"),
                ))?;
        }
        if let Some(loss) = self.loss_warning {
            options.loss_warning = u8::try_from(loss)
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or((
                    "loss_warning",
                    format!("loss_warning = {loss}: give a percentage from 1 to 100"),
                ))?;
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_loss_are_checked() {
        assert_eq!(PingSpec::default().options().unwrap().count, 3);
        let spec = PingSpec {
            count: Some(5),
            loss_warning: Some(40),
        };
        let options = spec.options().unwrap();
        assert_eq!((options.count, options.loss_warning), (5, 40));
        for (count, loss, key) in [
            (0, 20, "count"),
            (21, 20, "count"),
            (3, 0, "loss_warning"),
            (3, 101, "loss_warning"),
        ] {
            let spec = PingSpec {
                count: Some(count),
                loss_warning: Some(loss),
            };
            assert_eq!(spec.options().unwrap_err().0, key);
        }
    }
}
