/// A UTC calendar time from microseconds since the epoch (negative values count back from 1970).
struct UTCTime {
    var year: Int64
    var month: Int
    var day: Int
    var hour: Int64
    var minute: Int64
    var second: Int64
    var microsecond: Int64

    init(micros value: Int64) {
        let seconds = value >= 0 ? value / 1_000_000 : (value - 999_999) / 1_000_000
        microsecond = value - seconds * 1_000_000
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        (year, month, day) = CivilDate.from(daysSinceEpoch: days)
        hour = secondOfDay / 3600
        minute = secondOfDay / 60 % 60
        second = secondOfDay % 60
    }
}

/// Proleptic Gregorian calendar from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
enum CivilDate {
    static func from(daysSinceEpoch days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        let month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
