/* rtc.c: MC146818 RTC/CMOS reads: the host's UTC time, and 128 bytes of CMOS RAM. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "devices/legacy/legacy.h"
#include "lib/lib.h"

#define RTC_NPORTS     2
#define PORT_INDEX     0
#define PORT_DATA      1
#define RTC_INDEX_MASK 0x7f /* bit 7 of the index port is the NMI mask, not part of the index */

#define REG_SECONDS 0x00
#define REG_MINUTES 0x02
#define REG_HOURS   0x04
#define REG_WEEKDAY 0x06
#define REG_DAY     0x07
#define REG_MONTH   0x08
#define REG_YEAR    0x09
#define REG_A       0x0a
#define REG_B       0x0b
#define REG_C       0x0c
#define REG_D       0x0d
#define REG_CENTURY 0x32

#define A_UIP     0x80
#define A_DEFAULT 0x26 /* 32.768 kHz time base, 1024 Hz periodic rate */
#define B_24H     0x02
#define B_BINARY  0x04
#define B_DEFAULT B_24H /* 24-hour, BCD */
#define D_VRT     0x80  /* RAM and time valid */
#define HOUR_PM   0x80  /* 12-hour mode */

struct rtc {
    pthread_mutex_t lock; /* guards index and cmos: vCPUs may race on the ports */
    uint8_t index;
    uint8_t cmos[128];
};

/* The clock fields; 0x01, 0x03 and 0x05 between them are alarm bytes, kept as written. */
static bool is_clock_reg(uint8_t reg)
{
    if (reg == 0x01 || reg == 0x03 || reg == 0x05)
        return false;
    return reg <= REG_YEAR || reg == REG_CENTURY;
}

static uint8_t encode(const struct rtc *rtc, unsigned value)
{
    if (rtc->cmos[REG_B] & B_BINARY)
        return (uint8_t)value;
    return (uint8_t)(((value / 10) << 4) | (value % 10));
}

static uint8_t encode_hour(const struct rtc *rtc, unsigned hour)
{
    unsigned h12;

    if (rtc->cmos[REG_B] & B_24H)
        return encode(rtc, hour);
    h12 = hour % 12 ? hour % 12 : 12;
    return encode(rtc, h12) | (hour >= 12 ? HOUR_PM : 0);
}

static uint8_t read_time(const struct rtc *rtc, uint8_t reg)
{
    time_t now = time(NULL);
    struct tm tm;

    if (!gmtime_r(&now, &tm))
        return 0;
    switch (reg) {
    case REG_SECONDS:
        return encode(rtc, (unsigned)tm.tm_sec % 60); /* a leap second reads as :00 */
    case REG_MINUTES:
        return encode(rtc, (unsigned)tm.tm_min);
    case REG_HOURS:
        return encode_hour(rtc, (unsigned)tm.tm_hour);
    case REG_WEEKDAY:
        return encode(rtc, (unsigned)tm.tm_wday + 1); /* 1 = Sunday */
    case REG_DAY:
        return encode(rtc, (unsigned)tm.tm_mday);
    case REG_MONTH:
        return encode(rtc, (unsigned)tm.tm_mon + 1);
    case REG_YEAR:
        return encode(rtc, (unsigned)(tm.tm_year + 1900) % 100);
    case REG_CENTURY:
        return encode(rtc, (unsigned)(tm.tm_year + 1900) / 100);
    default:
        return 0;
    }
}

static uint8_t read_reg(const struct rtc *rtc, uint8_t reg)
{
    switch (reg) {
    case REG_A:
        /* The time is computed on each read, so there is never an update in progress. */
        return rtc->cmos[REG_A] & ~A_UIP;
    case REG_C:
        return 0; /* no periodic, alarm or update interrupts are ever flagged */
    case REG_D:
        return D_VRT;
    default:
        return is_clock_reg(reg) ? read_time(rtc, reg) : rtc->cmos[reg];
    }
}

static void write_reg(struct rtc *rtc, uint8_t reg, uint8_t val)
{
    if (reg == REG_C || reg == REG_D)
        return; /* read-only */
    if (is_clock_reg(reg)) {
        /* The guest cannot move the host's clock; log it since its time will not stick. */
        log_once(LOG_INFO,
                 "rtc: ignoring a write to time register 0x%02x: the RTC follows the "
                 "host clock",
                 reg);
        return;
    }
    if (reg == REG_A)
        val &= ~A_UIP;
    rtc->cmos[reg] = val;
}

struct rtc *rtc_create(void)
{
    struct rtc *rtc = calloc(1, sizeof(*rtc));
    int ret;

    if (!rtc)
        return NULL;
    ret = pthread_mutex_init(&rtc->lock, NULL);
    if (ret) {
        free(rtc);
        errno = ret;
        return NULL;
    }
    rtc->cmos[REG_A] = A_DEFAULT;
    rtc->cmos[REG_B] = B_DEFAULT;
    rtc->cmos[REG_D] = D_VRT;
    return rtc;
}

void rtc_destroy(struct rtc *rtc)
{
    if (!rtc)
        return;
    pthread_mutex_destroy(&rtc->lock);
    free(rtc);
}

void rtc_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct rtc *rtc = opaque;

    pthread_mutex_lock(&rtc->lock);
    for (uint32_t i = 0; i < len; i++) {
        uint64_t port = offset < RTC_NPORTS && i < RTC_NPORTS - offset ? offset + i : ~0ULL;

        if (is_write) {
            if (port == PORT_INDEX)
                rtc->index = data[i] & RTC_INDEX_MASK;
            else if (port == PORT_DATA)
                write_reg(rtc, rtc->index, data[i]);
        } else {
            /* The index port is write-only: reading it finds nothing driving the bus. */
            data[i] = port == PORT_DATA ? read_reg(rtc, rtc->index) : 0xff;
        }
    }
    pthread_mutex_unlock(&rtc->lock);
}
